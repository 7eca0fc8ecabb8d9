//! Signing callbacks as the Standard Webhooks specification says: the key is the base64 part
//! of a `whsec_` secret, and `webhook-signature` is `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one per key, space-separated while a key is being rotated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret's prefix in the specification's format.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signing keys, newest first. Never printed: `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} key(s), redacted)", self.0.len())
    }
}

impl SigningKeys {
    /// Keys from secrets in the `whsec_<base64>` form (24 to 64 bytes of key, as the
    /// specification recommends). The error never repeats the secret.
    pub fn parse<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut keys = Vec::new();
        for secret in secrets {
            let encoded = secret
                .trim()
                .strip_prefix(SECRET_PREFIX)
                .ok_or_else(|| format!("must start with `{SECRET_PREFIX}`"))?;
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| format!("must be `{SECRET_PREFIX}` followed by base64"))?;
            if !(24..=64).contains(&key.len()) {
                return Err(format!(
                    "the key must be 24 to 64 bytes once decoded, not {}",
                    key.len()
                ));
            }
            keys.push(key);
        }
        Ok(Self(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `webhook-signature` header value, or `None` when no key is set.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        let signatures: Vec<String> = self
            .0
            .iter()
            .map(|key| {
                // HMAC takes a key of any length; this cannot fail.
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                mac.update(format!("{id}.{timestamp}.").as_bytes());
                mac.update(body);
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            })
            .collect();
        (!signatures.is_empty()).then(|| signatures.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_test_vector() {
        let keys = SigningKeys::parse(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
        assert_eq!(
            keys.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            )
            .unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_keys_sign_twice_and_bad_secrets_are_refused() {
        let a = format!("whsec_{}", STANDARD.encode([1u8; 32]));
        let b = format!("whsec_{}", STANDARD.encode([2u8; 32]));
        let header = SigningKeys::parse([a.as_str(), b.as_str()])
            .unwrap()
            .sign("id", 1, b"{}")
            .unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert!(SigningKeys::default().sign("id", 1, b"{}").is_none());
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_AAAA",
        ] {
            let err = SigningKeys::parse([bad]).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
        assert!(!format!("{:?}", SigningKeys::parse([a.as_str()]).unwrap()).contains(&a[6..]));
    }
}
