#!/usr/bin/env bash
# Refreshing over HTTP, three clients side by side in one run against one token endpoint
# on 127.0.0.1: keyturn's http_json provider (keep-alive pool), a Node.js fetch() loop
# (keep-alive), and one curl process per refresh, as a cron script does it.
#
#   bench/http_run.sh [--count N] [--curl N] [--window W] [--build-dir DIR]
#
#   --count N        refreshes per round for keyturn and Node.js (default 10000)
#   --curl N         curl processes started one after another (default 500; each is a
#                    whole process, so a sample is enough for a per-refresh figure)
#   --window W       refreshes in flight in keyturn's refresh-now round and Node.js
#                    loops (default 64)
#   --build-dir DIR  where to build (default build-bench at the top of the repository)
#
# The endpoint runs in its own process, so each client's CPU time is its own. Target:
# keyturn's refreshes per CPU second at least 5 times the Node.js loop's, compared round
# for round (a first round in a fresh process, then a second one warm). curl is
# installed from Debian's packages when it is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build="$root/build-bench"
count=10000
curl_count=500
window=64

while [[ $# -gt 0 ]]; do
    case "$1" in
        --count) count=$2; shift 2 ;;
        --curl) curl_count=$2; shift 2 ;;
        --window) window=$2; shift 2 ;;
        --build-dir) build=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "http_run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

command -v node >/dev/null 2>&1 || { echo "http_run.sh: node is missing" >&2; exit 1; }
if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y -qq --no-install-recommends curl >/dev/null
    else
        echo "http_run.sh: curl is missing: apt-get install curl" >&2
        exit 1
    fi
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKEYTURN_BUILD_BENCH=ON \
    -DKEYTURN_BUILD_TESTS=OFF -DKEYTURN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target http_endpoint http_refresh_bench

work=$(mktemp -d)
endpoint_pid=
cleanup() {
    [ -n "$endpoint_pid" ] && kill "$endpoint_pid" 2>/dev/null && wait "$endpoint_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$build/bench/http_endpoint" --port-file "$work/port" >"$work/endpoint.log" 2>&1 &
endpoint_pid=$!
for _ in $(seq 100); do
    [ -s "$work/port" ] && break
    sleep 0.05
done
[ -s "$work/port" ] || { echo "http_run.sh: the endpoint did not start" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$work/port")/token"
stats() { curl -sS "http://127.0.0.1:$(cat "$work/port")/stats"; }

echo
echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== node $(node --version), $(curl --version | head -n1 | cut -d' ' -f1-2)"
echo "== endpoint $url"
echo

results="$work/results"
run() {
    local before after
    before=$(stats)
    "$@" | tee -a "$results"
    after=$(stats)
    echo "   endpoint: before $before   after $after" | tr -d '\n'
    echo
}

run "$build/bench/http_refresh_bench" --url "$url" --count "$count" --window "$window"
run node "$here/http_fetch_bench.mjs" --url "$url" --count "$count" --concurrency "$window"
run "$build/bench/http_refresh_bench" --url "$url" --curl "$curl_count"

echo
awk -v target=5 '
    /^result / {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        key = f["client"] "/" f["round"]
        per_cpu[key] = f["cpu_s"] > 0 ? f["refreshes"] / f["cpu_s"] : 0
        per_s[key] = f["wall_s"] > 0 ? f["refreshes"] / f["wall_s"] : 0
        per_1000[key] = f["refreshes"] > 0 ? f["cpu_s"] * 1000 / f["refreshes"] : 0
        order[++n] = key
    }
    END {
        printf "%-22s %12s %18s %16s\n", "client/round", "refreshes/s", "CPU s per 1000", "per CPU second"
        for (i = 1; i <= n; i++) {
            k = order[i]
            printf "%-22s %12.0f %18.3f %16.0f\n", k, per_s[k], per_1000[k], per_cpu[k]
        }
        printf "\n%-44s %10s %10s %s\n", "target", "ratio", "needed", "result"
        np = split("keyturn/initial:node/round-1 keyturn/refresh-now:node/round-2", pairs, " ")
        for (p = 1; p <= np; p++) {
            split(pairs[p], ab, ":")
            if (!(ab[1] in per_cpu) || !(ab[2] in per_cpu) || per_cpu[ab[2]] == 0) continue
            ratio = per_cpu[ab[1]] / per_cpu[ab[2]]
            printf "%-44s %10.2f %10s %s\n", ab[1] " vs " ab[2] " per CPU second", ratio,
                   ">= " target, (ratio >= target) ? "PASS" : "MISS"
        }
        if ("curl/sample" in per_cpu && "keyturn/refresh-now" in per_cpu && per_cpu["curl/sample"] > 0)
            printf "%-44s %10.1f\n", "keyturn/refresh-now vs curl/sample per CPU second",
                   per_cpu["keyturn/refresh-now"] / per_cpu["curl/sample"]
    }' "$results"
echo
echo "== done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
