#!/usr/bin/env bash
# Installs what keyturn needs from Debian's packages, when something is missing.
# As root it runs apt-get itself; otherwise through sudo when sudo is there; else it
# prints the command to run and fails. Then it installs the npm package that the OAuth2
# tests run as their OpenID Connect provider (scripts/oidc_setup.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
    g++ make cmake pkg-config binutils
    libboost1.81-dev libboost-json1.81-dev   # Boost.Asio and Boost.JSON (1.74 has no JSON)
    libssl-dev                               # OpenSSL 3
    openssl                                  # the CLI makes test certificates (test_certs.py)
    libgtest-dev libgmock-dev libbenchmark-dev
    python3
    postgresql python3-psycopg2              # tests of the PostgreSQL rotation example
)
# Node.js and npm run the OAuth2 tests' OpenID Connect provider. Debian's are installed
# only when the commands are missing: a Node.js from elsewhere is used as it is (a
# vendor's nodejs package brings its own npm and conflicts with Debian's).
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "keyturn: installing missing packages: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "keyturn: run this as root, then try again:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
fi

"$root/scripts/oidc_setup.sh"
