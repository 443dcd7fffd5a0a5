#!/bin/sh
# Fails when the library exports any symbol but keyturn_* (the version node that the
# linker script defines is not a symbol users can call, and is skipped).
set -eu
lib="$1"
others=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | grep -v '^keyturn_' || true)
count=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | grep -c '^keyturn_' || true)
if [ -n "$others" ]; then
    echo "symbols exported besides keyturn_*:"
    echo "$others"
    exit 1
fi
if [ "$count" -lt 20 ]; then
    echo "only $count keyturn_* symbols exported; expected the whole C interface"
    exit 1
fi
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
case "$soname" in
    libkeyturn.so.[0-9]*) ;;
    *) echo "unexpected SONAME: '$soname'"; exit 1 ;;
esac
echo "ok: $count keyturn_* symbols, nothing else; SONAME $soname"
