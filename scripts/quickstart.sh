#!/usr/bin/env bash
# The first thing to run: installs what is missing, builds keyturn, and runs the
# Python quickstart (a token kept fresh for about 20 seconds) and the C example.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" build -DKEYTURN_BUILD_TESTS=OFF

export KEYTURN_LIBRARY="$root/build/libkeyturn.so"
echo "== examples/quickstart.py"
python3 "$root/examples/quickstart.py" "$@"
echo "== examples/hello_keyturn.c"
"$root/build/examples/hello_keyturn"
