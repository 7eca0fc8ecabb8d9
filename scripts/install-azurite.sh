#!/usr/bin/env bash
# Installs Azurite, the official Azure Storage emulator, pinned, into the project's .tools/
# (later versions need a newer Node than this project's machines have). Idempotent.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
version=3.35.0
bin="$repo/.tools/node_modules/.bin/azurite"
installed="$repo/.tools/node_modules/azurite/package.json"
if [ -x "$bin" ] && grep -q "\"version\": \"$version\"" "$installed" 2>/dev/null; then
  echo "azurite $version already in .tools/"
  exit 0
fi
command -v npm >/dev/null || { echo "install-azurite: npm is required (Node 20)" >&2; exit 1; }
mkdir -p "$repo/.tools"
npm install --prefix "$repo/.tools" --no-audit --no-fund --loglevel=error "azurite@$version"
"$bin" --version
