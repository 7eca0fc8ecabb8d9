//! The status endpoint's query parameters, as in the original sample: `OnComplete` and
//! `OnPending`, names and values matched case-insensitively. Other parameters (such as the
//! Functions key `code`) are ignored. The host rebuilds the query string from its parsed
//! collection, so a repeated key may arrive as `a=x,x` or as two pairs: agreeing repeats are fine.

use super::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnComplete {
    #[default]
    Redirect,
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnPending {
    #[default]
    Accepted,
    Ok,
    Synchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusQuery {
    pub on_complete: OnComplete,
    pub on_pending: OnPending,
}

impl StatusQuery {
    pub fn parse(raw: &str) -> Result<Self, Problem> {
        let mut on_complete: Option<String> = None;
        let mut on_pending: Option<String> = None;
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let slot = if key.eq_ignore_ascii_case("OnComplete") {
                ("OnComplete", &mut on_complete)
            } else if key.eq_ignore_ascii_case("OnPending") {
                ("OnPending", &mut on_pending)
            } else {
                continue;
            };
            for part in value.split(',') {
                let part = part.trim().to_ascii_lowercase();
                match slot.1 {
                    Some(seen) if *seen != part => {
                        return Err(Problem::invalid_query(
                            slot.0,
                            format!("`{}` is given twice with different values", slot.0),
                        ))
                    }
                    _ => *slot.1 = Some(part),
                }
            }
        }
        let on_complete = match on_complete.as_deref() {
            None | Some("redirect") => OnComplete::Redirect,
            Some("stream") => OnComplete::Stream,
            Some(_) => {
                return Err(Problem::invalid_query(
                    "OnComplete",
                    "`OnComplete` must be `Redirect` or `Stream`",
                ))
            }
        };
        let on_pending = match on_pending.as_deref() {
            None | Some("accepted") => OnPending::Accepted,
            Some("ok") => OnPending::Ok,
            Some("synchronous") => OnPending::Synchronous,
            Some(_) => {
                return Err(Problem::invalid_query(
                    "OnPending",
                    "`OnPending` must be `Accepted`, `OK` or `Synchronous`",
                ))
            }
        };
        Ok(Self {
            on_complete,
            on_pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_with_defaults() {
        assert_eq!(StatusQuery::parse("").unwrap(), StatusQuery::default());
        let q = StatusQuery::parse("oncomplete=STREAM&ONPENDING=ok&code=abc").unwrap();
        assert_eq!(q.on_complete, OnComplete::Stream);
        assert_eq!(q.on_pending, OnPending::Ok);
        assert_eq!(
            StatusQuery::parse("OnPending=Synchronous")
                .unwrap()
                .on_pending,
            OnPending::Synchronous
        );
    }

    #[test]
    fn repeats_that_agree_are_fine() {
        assert!(StatusQuery::parse("OnPending=OK&onpending=ok").is_ok());
        assert!(StatusQuery::parse("OnPending=OK%2Cok").is_ok());
        assert!(StatusQuery::parse("OnPending=OK&OnPending=Accepted").is_err());
    }

    #[test]
    fn unknown_values_are_refused() {
        for q in [
            "OnComplete=Later",
            "OnPending=",
            "OnPending=%FF",
            "OnComplete=redirect,stream",
        ] {
            let p = StatusQuery::parse(q).unwrap_err();
            assert_eq!(p.status.as_u16(), 400, "{q}");
        }
    }
}
