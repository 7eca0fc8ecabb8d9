#!/usr/bin/env bash
# Builds the handler as a static, stripped Linux x86-64 executable (musl, rustls, no OpenSSL).
#
#   bash scripts/build-static.sh           the release build (fat LTO, one codegen unit: small,
#                                          slow to build), at ./handler, the path host.json names
#                                          and the one scripts/package.sh ships. Runs on any Linux
#                                          Functions plan.
#   bash scripts/build-static.sh --quick   the test command's build (Cargo profile `ci-static`: no
#                                          LTO, no optimisation, about a third of the time), at
#                                          target/quick-static/handler and never at ./handler, so no
#                                          publish or full benchmark takes it by accident. It is
#                                          as static as the release build; its size means nothing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
target=x86_64-unknown-linux-musl

profile=release
out=./handler
case "${1:-}" in
  "") ;;
  --quick) profile=ci-static; out=target/quick-static/handler ;;
  *) echo "usage: scripts/build-static.sh [--quick]" >&2; exit 2 ;;
esac

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
  # ring (rustls' crypto) has C parts that need a musl C compiler.
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq musl-tools >/dev/null
fi

cargo build --locked --profile "$profile" --target "$target" --bin handler
mkdir -p "$(dirname "$out")"
cp "${CARGO_TARGET_DIR:-target}/$target/$profile/handler" "$out"
strip "$out" 2>/dev/null || true
chmod 755 "$out"

# Prove it is static: no program interpreter, no dynamic section.
if readelf -l "$out" | grep -q "INTERP"; then
  echo "build-static: $out is dynamically linked" >&2
  exit 1
fi
printf 'built %s: static %s, profile %s, %s bytes\n' "$out" "$target" "$profile" "$(stat -c %s "$out")"
