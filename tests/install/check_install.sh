#!/bin/sh
# Installs the built library into a temporary prefix, then builds and runs a small
# consumer against it through find_package(keyturn) and through pkg-config.
set -eu
build_dir=$1
source_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
test -f "$work/prefix/include/keyturn.h"
test -f "$libdir/pkgconfig/keyturn.pc"
test -f "$libdir/cmake/keyturn/keyturnConfig.cmake"

PKG_CONFIG_PATH="$libdir/pkgconfig" cmake -S "$source_dir" -B "$work/consumer" \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/consumer/consumer_cmake"
LD_LIBRARY_PATH="$libdir" "$work/consumer/consumer_pkgconfig"
