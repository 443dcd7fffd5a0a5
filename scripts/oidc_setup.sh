#!/usr/bin/env bash
# Installs the OpenID Connect provider the OAuth2 tests run (the npm package oidc-provider)
# into tests/support/oidc/node_modules, exactly as tests/support/oidc/package-lock.json
# pins it. scripts/setup.sh calls this after it has made sure Node.js and npm are there.
#
# Quick when nothing changed: a stamp inside node_modules records the lock file's hash
# and the Node.js major version it was installed for, and a matching stamp means done.
# Otherwise `npm ci` reinstalls from the lock file alone, without install scripts.
# Writes nothing outside the repository except npm's own cache (~/.npm by default).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/tests/support/oidc"
stamp="$dir/node_modules/.keyturn-installed"
# package.json pins oidc-provider 8.8.1: it runs on Debian 12's Node.js 18 as well as on
# newer ones, while 9.x calls URL.parse and crypto.hash, which Node.js 18 lacks.
min_node_major=18

fail() {
    echo "keyturn: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node is missing; scripts/setup.sh installs Debian's nodejs"
command -v npm >/dev/null 2>&1 || fail "npm is missing; scripts/setup.sh installs Debian's npm"

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge "$min_node_major" ] ||
    fail "Node.js $(node --version) is too old for oidc-provider: $min_node_major or newer needed"

want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) node$node_major"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    [ -f "$dir/node_modules/oidc-provider/package.json" ]; then
    exit 0
fi

echo "keyturn: installing oidc-provider for the OAuth2 tests into tests/support/oidc/node_modules"
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=error)
(cd "$dir" && node --input-type=module -e 'await import("oidc-provider")') ||
    fail "oidc-provider was installed but does not load with Node.js $(node --version)"
echo "$want" >"$stamp"
