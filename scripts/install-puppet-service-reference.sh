#!/usr/bin/env bash
# Installs the Wechaty puppet-service reference server (npm wechaty-puppet-service's PuppetServer
# with wechaty-puppet-mock behind it, the versions pinned in scripts/puppet-service-reference/
# package-lock.json) into .cache/puppet-service/reference-<lock hash>/, and prints that folder.
# The tests call it (tests/harness/puppet_service.py), so `make test` installs it on a fresh
# machine; a second run with the same lock file does nothing. Needs Node 20 and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
src=scripts/puppet-service-reference
command -v npm >/dev/null || { echo "error: npm (Node 20) is needed for the puppet-service reference server" >&2; exit 1; }
hash=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)
dest=.cache/puppet-service/reference-$hash
if [ ! -f "$dest/.installed" ]; then
  rm -rf "$dest" && mkdir -p "$dest"
  cp "$src/package.json" "$src/package-lock.json" "$dest/"
  # --ignore-scripts: nothing here needs a build step (leveldown ships prebuilt binaries).
  (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  touch "$dest/.installed"
fi
cp "$src/server.cjs" "$dest/server.cjs"
echo "$(pwd)/$dest"
