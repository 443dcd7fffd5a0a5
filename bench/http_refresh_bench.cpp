// Refreshing many credentials against one HTTP token endpoint, through the C ABI, and
// the same requests made the way a cron script makes them: one curl process each.
//
//   http_refresh_bench --url URL [--count N] [--window W] [--threads T] [--rounds 1|2]
//                      [--timeout S]
//   http_refresh_bench --url URL --curl N [--curl-path PATH]
//
// keyturn (the default): N credentials (default 10 000), each
//   {"id": "c<i>", "provider": {"type": "http_json", "url": URL,
//    "body": "{\"client\":\"bench\"}",
//    "response": {"value": "/access_token", "expires_in": "/expires_in"}}}
// with a memory store and the default policy, are given to keyturn_engine_new() in one
// configuration; a subscriber counts "refreshed" and "refresh_failed" events.
//   round 1, initial:  from keyturn_engine_new() (the configuration text is built
//                      first, untimed) through keyturn_engine_start() to the N-th
//                      "refreshed" event. Every credential is due at once, so the
//                      engine starts all N refreshes as fast as it can.
//   round 2, refresh-now: keyturn_credential_refresh() for W credentials (default 64),
//                      then one more from the subscriber for each "refreshed" event, so
//                      that at most W refreshes are in flight, to the N-th event.
// Each round reports its wall time and the CPU time of the whole process (getrusage
// RUSAGE_SELF, user + system, every thread).
//
// curl: N times in sequence, `curl -sS --fail --data ... URL` is started with
// posix_spawn, its standard output read and checked for an access_token; the CPU time
// is that of the children (RUSAGE_CHILDREN), the wall time the whole loop's.
//
// Each round ends with one machine-readable line:
//   result client=<name> round=<name> refreshes=<n> failures=<n> wall_s=<s> cpu_s=<s>
//          user_s=<s> sys_s=<s>
// The exit status is 1 when a round did not complete, 0 otherwise.

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "keyturn.h"

extern char **environ;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string url;
    long count = 10000;
    long window = 64;
    int threads = 1;
    int rounds = 2;
    double timeout_s = 120;
    long curl = 0;  // > 0: the curl baseline with this many requests
    std::string curl_path = "curl";
};

struct CpuTimes {
    double user = 0;
    double sys = 0;
};

CpuTimes cpu_times(int who) {
    rusage usage{};
    getrusage(who, &usage);
    auto seconds = [](const timeval &t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
    return {seconds(usage.ru_utime), seconds(usage.ru_stime)};
}

// A wall clock and a CPU clock started together.
class Meter {
  public:
    explicit Meter(int who) : who_(who), wall_(Clock::now()), cpu_(cpu_times(who)) {}

    void report(const char *client, const char *round, long refreshes, long failures) const {
        const double wall = std::chrono::duration<double>(Clock::now() - wall_).count();
        const CpuTimes now = cpu_times(who_);
        const double user = now.user - cpu_.user;
        const double sys = now.sys - cpu_.sys;
        const double cpu = user + sys;
        std::printf(
            "%-8s %-12s %6ld refreshes in %7.3f s: %9.0f /s, %.3f CPU s per 1000, "
            "%.0f per CPU second\n",
            client, round, refreshes, wall, refreshes / wall,
            refreshes > 0 ? cpu * 1000.0 / refreshes : 0.0, cpu > 0 ? refreshes / cpu : 0.0);
        std::printf(
            "result client=%s round=%s refreshes=%ld failures=%ld wall_s=%.4f cpu_s=%.4f "
            "user_s=%.4f sys_s=%.4f\n",
            client, round, refreshes, failures, wall, cpu, user, sys);
        std::fflush(stdout);
    }

  private:
    int who_;
    Clock::time_point wall_;
    CpuTimes cpu_;
};

// --- keyturn ------------------------------------------------------------------------

// What the subscriber sees. Written on the engine's worker threads, read by main.
struct Tally {
    std::atomic<long> refreshed{0};
    std::atomic<long> failed{0};
    long target = 0;

    // Round 2: the next credential to refresh, and the ids to name it by.
    std::atomic<bool> chain{false};
    std::atomic<long> next{0};
    std::atomic<long> refresh_errors{0};
    const std::vector<std::string> *ids = nullptr;
    keyturn_engine *engine = nullptr;

    std::mutex mutex;
    std::condition_variable reached;
    bool done = false;

    void reset(long goal) {
        refreshed = 0;
        failed = 0;
        target = goal;
        std::lock_guard lock(mutex);
        done = false;
    }

    // Waits until `target` credentials have refreshed; false on timeout.
    bool wait(double timeout_s) {
        std::unique_lock lock(mutex);
        return reached.wait_for(lock, std::chrono::duration<double>(timeout_s),
                                [this] { return done; });
    }
};

bool has_type(std::string_view json, std::string_view type) {
    // Events are written compactly by keyturn: "type":"<name>" near the start.
    char needle[64];
    const int n = std::snprintf(needle, sizeof needle, "\"type\":\"%.*s\"",
                                static_cast<int>(type.size()), type.data());
    return json.find(std::string_view(needle, static_cast<std::size_t>(n))) !=
           std::string_view::npos;
}

void refresh_next(Tally &tally) {
    const long i = tally.next.fetch_add(1);
    if (i >= static_cast<long>(tally.ids->size())) return;
    if (keyturn_credential_refresh(tally.engine, (*tally.ids)[i].c_str()) != KEYTURN_OK) {
        ++tally.refresh_errors;
    }
}

void on_event(const char *json, size_t len, void *user_data) {
    auto &tally = *static_cast<Tally *>(user_data);
    const std::string_view text(json, len);
    if (has_type(text, "refreshed")) {
        const long n = tally.refreshed.fetch_add(1) + 1;
        if (tally.chain.load(std::memory_order_relaxed)) refresh_next(tally);
        if (n == tally.target) {
            std::lock_guard lock(tally.mutex);
            tally.done = true;
            tally.reached.notify_all();
        }
    } else if (has_type(text, "refresh_failed")) {
        // The engine retries with backoff; the round ends only once every credential
        // has a value, so failures show as time and are counted here.
        if (tally.failed.fetch_add(1) == 0) {
            std::fprintf(stderr, "first refresh failure: %.*s\n", static_cast<int>(len), json);
        }
    }
}

std::string json_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

std::string build_config(const Options &o, std::vector<std::string> &ids) {
    const std::string provider =
        R"({"type":"http_json","url":")" + json_escape(o.url) +
        R"(","body":"{\"client\":\"bench\"}",)"
        R"("response":{"value":"/access_token","expires_in":"/expires_in"}})";
    std::string config =
        R"({"engine":{"threads":)" + std::to_string(o.threads) + R"(},"credentials":[)";
    config.reserve(config.size() + static_cast<std::size_t>(o.count) * (provider.size() + 40));
    ids.reserve(static_cast<std::size_t>(o.count));
    for (long i = 0; i < o.count; ++i) {
        ids.push_back(std::string("c").append(std::to_string(i)));
        if (i > 0) config += ',';
        config.append(R"({"id":")").append(ids.back()).append(R"(","provider":)");
        config.append(provider).append("}");
    }
    config += "]}";
    return config;
}

int run_keyturn(const Options &o) {
    std::vector<std::string> ids;
    const std::string config = build_config(o, ids);
    Tally tally;
    tally.ids = &ids;
    int status = 0;

    // Round 1: registration, start and every initial refresh.
    tally.reset(o.count);
    Meter initial(RUSAGE_SELF);
    keyturn_engine *engine = nullptr;
    if (keyturn_engine_new(&engine, config.data(), config.size()) != KEYTURN_OK) {
        std::fprintf(stderr, "keyturn_engine_new: %s\n", keyturn_last_error());
        return 1;
    }
    tally.engine = engine;
    std::uint64_t subscription = 0;
    if (keyturn_subscribe(&subscription, engine, on_event, &tally, nullptr) != KEYTURN_OK ||
        keyturn_engine_start(engine) != KEYTURN_OK) {
        std::fprintf(stderr, "keyturn: %s\n", keyturn_last_error());
        keyturn_engine_free(engine);
        return 1;
    }
    const bool initial_done = tally.wait(o.timeout_s);
    initial.report("keyturn", "initial", tally.refreshed.load(), tally.failed.load());
    if (!initial_done) {
        std::fprintf(stderr, "initial round: only %ld of %ld refreshed within %.0f s\n",
                     tally.refreshed.load(), o.count, o.timeout_s);
        status = 1;
    }

    // Round 2: refresh-now with at most `window` in flight.
    if (status == 0 && o.rounds >= 2) {
        tally.reset(o.count);
        tally.next = 0;
        tally.chain = true;
        Meter now(RUSAGE_SELF);
        for (long i = 0; i < std::min(o.window, o.count); ++i)
            refresh_next(tally);
        const bool done = tally.wait(o.timeout_s);
        tally.chain = false;
        now.report("keyturn", "refresh-now", tally.refreshed.load(), tally.failed.load());
        if (!done || tally.refresh_errors.load() > 0) {
            std::fprintf(stderr, "refresh-now round: %ld of %ld refreshed, %ld calls failed\n",
                         tally.refreshed.load(), o.count, tally.refresh_errors.load());
            status = 1;
        }
    }

    const auto free_start = Clock::now();
    keyturn_engine_free(engine);
    std::printf("keyturn_engine_free: %.3f s (not in the rounds)\n",
                std::chrono::duration<double>(Clock::now() - free_start).count());
    return status;
}

// --- curl ---------------------------------------------------------------------------

// Runs curl once and reads its answer; true when it exited 0 with a token.
bool run_curl_once(const Options &o, std::string &answer) {
    int out[2];
    if (pipe(out) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, out[1]);

    std::vector<std::string> args = {o.curl_path,
                                     "-sS",
                                     "--fail",
                                     "-H",
                                     "Content-Type: application/json",
                                     "-H",
                                     "Accept: application/json",
                                     "--data-raw",
                                     R"({"client":"bench"})",
                                     o.url};
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, o.curl_path.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (rc != 0) {
        close(out[0]);
        std::fprintf(stderr, "cannot start %s: %s\n", o.curl_path.c_str(), std::strerror(rc));
        return false;
    }
    answer.clear();
    char buf[4096];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0)
        answer.append(buf, static_cast<std::size_t>(n));
    close(out[0]);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    return WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 &&
           answer.find("\"access_token\"") != std::string::npos;
}

int run_curl(const Options &o) {
    std::string answer;
    long failures = 0;
    Meter meter(RUSAGE_CHILDREN);
    for (long i = 0; i < o.curl; ++i) {
        if (!run_curl_once(o, answer)) ++failures;
    }
    meter.report("curl", "sample", o.curl - failures, failures);
    return failures == 0 ? 0 : 1;
}

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: http_refresh_bench --url URL [--count N] [--window W] [--threads T]\n"
                 "                          [--rounds 1|2] [--timeout S]\n"
                 "       http_refresh_bench --url URL --curl N [--curl-path PATH]\n");
    std::exit(status);
}

}  // namespace

int main(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc) usage(2);
            return argv[++i];
        };
        if (arg == "--url")
            o.url = value();
        else if (arg == "--count")
            o.count = std::atol(value());
        else if (arg == "--window")
            o.window = std::atol(value());
        else if (arg == "--threads")
            o.threads = std::atoi(value());
        else if (arg == "--rounds")
            o.rounds = std::atoi(value());
        else if (arg == "--timeout")
            o.timeout_s = std::atof(value());
        else if (arg == "--curl")
            o.curl = std::atol(value());
        else if (arg == "--curl-path")
            o.curl_path = value();
        else if (arg == "-h" || arg == "--help")
            usage(0);
        else
            usage(2);
    }
    if (o.url.empty() || o.count < 1 || o.window < 1 || o.threads < 1 || o.rounds < 1) usage(2);
    return o.curl > 0 ? run_curl(o) : run_keyturn(o);
}
