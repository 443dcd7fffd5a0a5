#!/usr/bin/env bash
# Installs what keyturn needs from Debian's packages, when something is missing.
# As root it runs apt-get itself; otherwise through sudo when sudo is there; else it
# prints the command to run and fails.
set -euo pipefail

packages=(
    g++ make cmake pkg-config binutils
    libboost1.81-dev libboost-json1.81-dev   # Boost.Asio and Boost.JSON (1.74 has no JSON)
    libssl-dev                               # OpenSSL 3
    libgtest-dev libgmock-dev libbenchmark-dev
    python3
    postgresql python3-psycopg2              # tests of the PostgreSQL rotation example
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
