// The Node.js baseline for bench/http_run.sh: the same token requests as
// http_refresh_bench, made with the global fetch() (Node 18 or later, no packages),
// over keep-alive connections, with a fixed number of requests in flight.
//
//   node bench/http_fetch_bench.mjs --url URL [--count N] [--concurrency C] [--rounds R]
//
// Each round sends N POSTs (default 10 000) with C loops (default 64), each awaiting
// its answer and parsing the JSON before sending the next; a round ends when every
// answer has been parsed. Round 1 runs in a fresh process (the JIT still warming up, a
// pool with no connection yet), like keyturn's initial round; round 2 reuses both.
// CPU time is process.cpuUsage() (user + system of every thread of the process), wall
// time performance.now(); neither includes starting Node itself.
//
// Each round ends with a line in the format http_refresh_bench prints:
//   result client=node round=<name> refreshes=<n> failures=<n> wall_s=<s> cpu_s=<s> ...

import { performance } from 'node:perf_hooks';

function parseArgs(argv) {
    const options = { url: '', count: 10000, concurrency: 64, rounds: 2 };
    for (let i = 0; i < argv.length; i++) {
        const name = argv[i];
        const value = argv[i + 1];
        if (name === '--url') options.url = value;
        else if (name === '--count') options.count = Number(value);
        else if (name === '--concurrency') options.concurrency = Number(value);
        else if (name === '--rounds') options.rounds = Number(value);
        else {
            console.error(`http_fetch_bench: unknown argument ${name}`);
            process.exit(2);
        }
        i++;
    }
    if (!options.url || !(options.count > 0) || !(options.concurrency > 0)) {
        console.error('usage: node http_fetch_bench.mjs --url URL [--count N] [--concurrency C] [--rounds R]');
        process.exit(2);
    }
    return options;
}

const body = JSON.stringify({ client: 'bench' });
const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };

// One refresh: the POST, the answer read and parsed, the token checked.
async function refreshOnce(url) {
    const response = await fetch(url, { method: 'POST', headers, body });
    if (!response.ok) {
        await response.arrayBuffer();
        throw new Error(`HTTP ${response.status}`);
    }
    const token = await response.json();
    if (typeof token.access_token !== 'string') throw new Error('no access_token in the answer');
    return token;
}

async function round(options, name) {
    let next = 0;
    let refreshed = 0;
    let failures = 0;
    async function loop() {
        while (next < options.count) {
            next++;
            try {
                await refreshOnce(options.url);
                refreshed++;
            } catch (error) {
                if (failures++ === 0) console.error(`first failure: ${error.message}`);
            }
        }
    }

    const cpuStart = process.cpuUsage();
    const wallStart = performance.now();
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.count) }, loop));
    const wall = (performance.now() - wallStart) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    const user = cpu.user / 1e6;
    const sys = cpu.system / 1e6;
    const total = user + sys;

    const pad = (text, width) => String(text).padEnd(width);
    console.log(`${pad('node', 8)} ${pad(name, 12)} ${String(refreshed).padStart(6)} refreshes in ` +
        `${wall.toFixed(3).padStart(7)} s: ${(refreshed / wall).toFixed(0).padStart(9)} /s, ` +
        `${(total * 1000 / refreshed).toFixed(3)} CPU s per 1000, ` +
        `${(refreshed / total).toFixed(0)} per CPU second`);
    console.log(`result client=node round=${name} refreshes=${refreshed} failures=${failures} ` +
        `wall_s=${wall.toFixed(4)} cpu_s=${total.toFixed(4)} user_s=${user.toFixed(4)} ` +
        `sys_s=${sys.toFixed(4)}`);
    return failures;
}

const options = parseArgs(process.argv.slice(2));
let failures = 0;
for (let r = 1; r <= options.rounds; r++) {
    failures += await round(options, r === 1 ? 'round-1' : `round-${r}`);
}
process.exit(failures === 0 ? 0 : 1);
