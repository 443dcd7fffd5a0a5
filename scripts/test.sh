#!/usr/bin/env bash
# Runs every test: installs what is missing, then
#   1. a normal build and the whole suite (C++, C ABI, Python, examples);
#   2. the suite again under AddressSanitizer and UndefinedBehaviorSanitizer;
#   3. the threaded engine, rotator, exec runner, HTTP client, C ABI and configuration
#      tests under ThreadSanitizer.
# Set KEYTURN_QUICK=1 to run only the first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
jobs=$(nproc)

echo "== build and test"
"$root/scripts/build.sh" build
(cd "$root/build" && ctest -j"$jobs" --output-on-failure --timeout 600)

[ "${KEYTURN_QUICK:-0}" = 1 ] && exit 0

echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
"$root/scripts/build.sh" build-asan -DKEYTURN_SANITIZE=address,undefined -DKEYTURN_BUILD_EXAMPLES=OFF
# Python loads the instrumented library into an uninstrumented interpreter, so the
# ASan runtime is preloaded there; leak checking stays on for the C++ tests only.
export ASAN_PRELOAD
ASAN_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
(cd "$root/build-asan" &&
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest -j"$jobs" --output-on-failure --timeout 900 -E 'python|quickstart')
(cd "$root/build-asan" &&
    LD_PRELOAD="$ASAN_PRELOAD" ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure --timeout 900 -R 'python|quickstart')

echo "== ThreadSanitizer (engine, rotator, exec runner, HTTP client, C ABI and configuration tests)"
"$root/scripts/build.sh" build-tsan -DKEYTURN_SANITIZE=thread -DKEYTURN_BUILD_EXAMPLES=OFF
(cd "$root/build-tsan" &&
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest -j"$jobs" --output-on-failure --timeout 900 -R 'Engine|Capi|Config|Rotator|Exec|Http')
