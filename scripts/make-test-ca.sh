#!/usr/bin/env bash
# Makes a throw-away certificate authority and a leaf certificate for 127.0.0.1/localhost in
# the folder given (ca.pem, leaf.pem, leaf.key), for Azurite over HTTPS in OAuth mode. The CA
# and the leaf are separate because rustls refuses a self-signed leaf that is its own CA.
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ -s ca.pem ] && [ -s leaf.pem ] && [ -s leaf.key ]; then exit 0; fi
command -v openssl >/dev/null || { echo "openssl is required (apt-get install openssl)" >&2; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/CN=async-request-reply test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj "/CN=127.0.0.1" 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 30 \
  -extfile leaf.ext 2>/dev/null
rm -f leaf.csr leaf.ext ca.srl
