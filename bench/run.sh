#!/usr/bin/env bash
# Builds the benchmarks in Release and runs both; about a minute of running on two
# cores, plus the build.
#
#   bench/run.sh [--count N] [--min-time SECONDS] [--repetitions R] [--build-dir DIR]
#
#   --count N          credentials for scale_bench (default 1000000)
#   --min-time S       --benchmark_min_time for each read benchmark (default 0.5)
#   --repetitions R    repetitions of each read benchmark; the summary uses the median
#                      (default 3)
#   --build-dir DIR    where to build (default build-bench at the top of the repository)
#
# The figures are only as quiet as the machine: the load average is printed first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build="$root/build-bench"
count=1000000
min_time=0.5
repetitions=3

while [[ $# -gt 0 ]]; do
    case "$1" in
        --count) count=$2; shift 2 ;;
        --min-time) min_time=$2; shift 2 ;;
        --repetitions) repetitions=$2; shift 2 ;;
        --build-dir) build=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKEYTURN_BUILD_BENCH=ON \
    -DKEYTURN_BUILD_TESTS=OFF -DKEYTURN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target read_bench scale_bench

echo
echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "== read_bench --benchmark_min_time=$min_time --benchmark_repetitions=$repetitions"
"$build/bench/read_bench" --benchmark_min_time="$min_time" \
    --benchmark_repetitions="$repetitions" --benchmark_display_aggregates_only=true
echo
echo "== scale_bench --count $count"
"$build/bench/scale_bench" --count "$count"
echo
echo "== done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
