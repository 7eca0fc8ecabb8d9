#!/usr/bin/env bash
# Builds the handler as a static, stripped Linux x86-64 executable (musl, rustls, no OpenSSL)
# and puts it at ./handler, the path host.json names. Runs on any Linux Functions plan.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
target=x86_64-unknown-linux-musl

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
  # ring (rustls' crypto) has C parts that need a musl C compiler.
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq musl-tools >/dev/null
fi

cargo build --locked --release --target "$target" --bin handler
cp "target/$target/release/handler" ./handler
strip ./handler 2>/dev/null || true
chmod 755 ./handler

# Prove it is static: no program interpreter, no dynamic section.
if readelf -l ./handler | grep -q "INTERP"; then
  echo "build-static: ./handler is dynamically linked" >&2
  exit 1
fi
printf 'built ./handler: static %s, %s bytes\n' "$target" "$(stat -c %s ./handler)"
