// Many credentials through the C ABI: how long registering them takes and how much
// memory they hold, how fast an engine completes their first refreshes, and how long
// freeing the engine takes.
//
//   scale_bench [--count N] [--mode add|config|both] [--threads T] [--timeout S] [--json]
//
// Two ways of registering are measured, each in a child process of its own so that
// one does not inherit the other's heap:
//   add     keyturn_engine_new() with no credential, then keyturn_credential_add()
//           once per credential;
//   config  every credential in the configuration given to keyturn_engine_new().
// Each credential is {"id":"c<i>","provider":{"type":"hook","name":"noop"},
// "policy":{"jitter":0}} with a memory store. The engine is then started with a hook
// that answers at once through keyturn_complete_value() with a 40-byte value that
// lives an hour, and no subscriber or logger, so no events are built.
//
// Memory is the growth of VmRSS (/proc/self/status) across a phase; the peak is
// VmHWM after resetting it through /proc/self/clear_refs. It is a report: the exit
// status is 0 whether targets are met or not, and 1 only when something failed.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "keyturn.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kValue = "tok-0123456789abcdef0123456789abcdef-AAA";
constexpr double kLifetimeSeconds = 3600;

// Targets for one million credentials; memory scales with the count.
constexpr double kTargetMiBPerMillion = 600;
constexpr double kTargetRegisterSeconds = 2;
constexpr double kTargetRefreshesPerSecond = 300000;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// --- /proc/self/status -----------------------------------------------------------

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"), or -1.
long long status_bytes(const char *field) {
    FILE *f = std::fopen("/proc/self/status", "r");
    if (f == nullptr) return -1;
    char line[256];
    long long kib = -1;
    const std::size_t n = std::strlen(field);
    while (std::fgets(line, sizeof line, f) != nullptr) {
        if (std::strncmp(line, field, n) == 0 && line[n] == ':') {
            kib = std::strtoll(line + n + 1, nullptr, 10);
            break;
        }
    }
    std::fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

long long rss_bytes() {
    return status_bytes("VmRSS");
}

// Resets VmHWM to the current RSS; false where the kernel does not allow it.
bool reset_peak() {
    int fd = ::open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0) return false;
    const bool ok = ::write(fd, "5", 1) == 1;
    ::close(fd);
    return ok;
}

// --- one measurement -------------------------------------------------------------

// What a child process sends back to the parent through a pipe.
struct Result {
    int ok = 0;
    char error[512] = {};
    long long count = 0;
    double config_build_s = -1;  // config mode: building the JSON text, not timed below
    double config_mib = -1;
    double register_s = 0;
    long long rss_register = 0;    // growth across registration
    long long peak_register = -1;  // peak growth during registration, -1 when unknown
    double start_s = 0;            // keyturn_engine_start()
    double refresh_s = 0;          // from before keyturn_engine_start() to the last answer
    long long completed = 0;
    long long hook_errors = 0;
    bool timed_out = false;
    long long rss_refreshed = 0;  // growth from before registration to all values held
    double free_s = 0;
};

struct HookState {
    std::atomic<long long> completed{0};
    std::atomic<long long> errors{0};
    std::atomic<long long> last_answer_ns{0};
    long long target = 0;
    Clock::time_point epoch;
};

int noop_hook(const char *, size_t, keyturn_completion completion, void *user_data) {
    auto *state = static_cast<HookState *>(user_data);
    const int rc =
        keyturn_complete_value(completion, kValue.data(), kValue.size(), kLifetimeSeconds);
    if (rc != KEYTURN_OK) {
        state->errors.fetch_add(1, std::memory_order_relaxed);
        return rc;
    }
    if (state->completed.fetch_add(1, std::memory_order_relaxed) + 1 == state->target) {
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - state->epoch);
        state->last_answer_ns.store(ns.count(), std::memory_order_relaxed);
    }
    return KEYTURN_OK;
}

bool failed(Result &r, const char *what, int rc) {
    std::snprintf(r.error, sizeof r.error, "%s failed: %s: %s", what, keyturn_status_name(rc),
                  keyturn_last_error());
    return false;
}

void progress(const char *format, ...) {
    va_list args;
    va_start(args, format);
    std::fputs("scale_bench: ", stderr);
    std::vfprintf(stderr, format, args);
    std::fputc('\n', stderr);
    va_end(args);
}

std::string engine_settings(int threads) {
    if (threads <= 0) return "{}";
    return "{\"threads\":" + std::to_string(threads) + "}";
}

int spec_text(char *buf, std::size_t cap, long long i) {
    return std::snprintf(buf, cap,
                         "{\"id\":\"c%lld\",\"provider\":{\"type\":\"hook\",\"name\":\"noop\"},"
                         "\"policy\":{\"jitter\":0}}",
                         i);
}

// Registers `count` credentials one keyturn_credential_add() at a time.
bool register_by_add(Result &r, keyturn_engine **engine, long long count, int threads) {
    const std::string config = "{\"engine\":" + engine_settings(threads) + "}";
    const Clock::time_point t0 = Clock::now();
    int rc = keyturn_engine_new(engine, config.data(), config.size());
    if (rc != KEYTURN_OK) return failed(r, "keyturn_engine_new", rc);
    char spec[160];
    for (long long i = 0; i < count; ++i) {
        const int len = spec_text(spec, sizeof spec, i);
        rc = keyturn_credential_add(*engine, spec, static_cast<std::size_t>(len));
        if (rc != KEYTURN_OK) return failed(r, "keyturn_credential_add", rc);
    }
    r.register_s = seconds_since(t0);
    return true;
}

// Registers `count` credentials through the configuration of keyturn_engine_new().
// The RSS baseline is taken after the text is built, so the text is not counted.
bool register_by_config(Result &r, keyturn_engine **engine, long long count, int threads,
                        long long &rss_base) {
    Clock::time_point t0 = Clock::now();
    std::string config;
    config.reserve(static_cast<std::size_t>(count) * 96 + 64);
    config += "{\"engine\":" + engine_settings(threads) + ",\"credentials\":[";
    char spec[160];
    for (long long i = 0; i < count; ++i) {
        if (i != 0) config += ',';
        config.append(spec, static_cast<std::size_t>(spec_text(spec, sizeof spec, i)));
    }
    config += "]}";
    r.config_build_s = seconds_since(t0);
    r.config_mib = static_cast<double>(config.size()) / (1 << 20);

    rss_base = rss_bytes();
    if (reset_peak()) r.peak_register = 0;
    t0 = Clock::now();
    const int rc = keyturn_engine_new(engine, config.data(), config.size());
    if (rc != KEYTURN_OK) return failed(r, "keyturn_engine_new", rc);
    r.register_s = seconds_since(t0);
    return true;
}

bool measure(Result &r, const std::string &mode, long long count, int threads, double timeout) {
    r.count = count;
    HookState hook;
    hook.target = count;
    keyturn_engine *engine = nullptr;

    long long rss_base = rss_bytes();
    if (mode == "add") {
        if (reset_peak()) r.peak_register = 0;
        progress("[%s] registering %lld credentials", mode.c_str(), count);
        if (!register_by_add(r, &engine, count, threads)) return false;
    } else {
        progress("[%s] building and parsing a configuration of %lld credentials", mode.c_str(),
                 count);
        if (!register_by_config(r, &engine, count, threads, rss_base)) return false;
    }
    const long long rss_registered = rss_bytes();
    r.rss_register = rss_registered - rss_base;
    if (r.peak_register == 0) r.peak_register = status_bytes("VmHWM") - rss_base;

    int rc = keyturn_hook_register(engine, "noop", noop_hook, &hook, nullptr);
    if (rc != KEYTURN_OK) return failed(r, "keyturn_hook_register", rc);

    progress("[%s] starting; waiting for %lld first refreshes", mode.c_str(), count);
    hook.epoch = Clock::now();
    rc = keyturn_engine_start(engine);
    if (rc != KEYTURN_OK) return failed(r, "keyturn_engine_start", rc);
    r.start_s = seconds_since(hook.epoch);
    for (;;) {
        if (hook.completed.load() >= count) break;
        if (seconds_since(hook.epoch) > timeout) {
            r.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    r.completed = hook.completed.load();
    r.hook_errors = hook.errors.load();
    r.refresh_s = r.timed_out ? seconds_since(hook.epoch)
                              : static_cast<double>(hook.last_answer_ns.load()) / 1e9;
    r.rss_refreshed = rss_bytes() - rss_base;

    // A spot check that the values are readable.
    char buf[256];
    std::size_t len = 0;
    rc = keyturn_read(engine, "c0", buf, sizeof buf, &len, nullptr);
    if (rc != KEYTURN_OK && !r.timed_out) return failed(r, "keyturn_read(\"c0\")", rc);

    progress("[%s] freeing the engine", mode.c_str());
    const Clock::time_point t0 = Clock::now();
    keyturn_engine_free(engine);
    r.free_s = seconds_since(t0);
    r.ok = 1;
    return true;
}

// Runs one mode in a child process and returns its result.
Result run_in_child(const std::string &mode, long long count, int threads, double timeout) {
    Result r;
    std::fflush(nullptr);
    int fds[2];
    if (::pipe(fds) != 0) {
        std::snprintf(r.error, sizeof r.error, "pipe: %s", std::strerror(errno));
        return r;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::snprintf(r.error, sizeof r.error, "fork: %s", std::strerror(errno));
        return r;
    }
    if (pid == 0) {
        ::close(fds[0]);
        Result mine;
        measure(mine, mode, count, threads, timeout);
        const ssize_t n = ::write(fds[1], &mine, sizeof mine);
        ::_exit(n == static_cast<ssize_t>(sizeof mine) ? 0 : 1);
    }
    ::close(fds[1]);
    std::size_t got = 0;
    auto *bytes = reinterpret_cast<char *>(&r);
    while (got < sizeof r) {
        const ssize_t n = ::read(fds[0], bytes + got, sizeof r - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (got != sizeof r) {
        r = Result{};
        if (WIFSIGNALED(status)) {
            std::snprintf(r.error, sizeof r.error, "the child process died of signal %d",
                          WTERMSIG(status));
        } else {
            std::snprintf(r.error, sizeof r.error, "the child process exited with status %d",
                          WEXITSTATUS(status));
        }
    }
    return r;
}

// --- the report ------------------------------------------------------------------

struct Line {
    std::string metric;
    std::string value;
    std::string target;
    std::string result;  // PASS, MISS or empty for a figure without a target
    std::string key;     // for --json
    double number;
};

std::string format(const char *fmt, ...) {
    char buf[128];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    return buf;
}

double mib(long long bytes) {
    return static_cast<double>(bytes) / (1 << 20);
}

void add_lines(std::vector<Line> &lines, const std::string &mode, const Result &r) {
    const std::string p = "[" + mode + "] ";
    const double n = static_cast<double>(r.count);
    const double target_mib = kTargetMiBPerMillion * n / 1e6;
    auto verdict = [](bool pass) { return std::string(pass ? "PASS" : "MISS"); };
    auto mem_target = format("<= %.0f MiB", target_mib);

    if (r.config_build_s >= 0) {
        lines.push_back({p + "configuration text size", format("%.1f MiB", r.config_mib), "", "",
                         mode + ".config_mib", r.config_mib});
        lines.push_back({p + "building that text (not in registration)",
                         format("%.3f s", r.config_build_s), "", "", mode + ".config_build_s",
                         r.config_build_s});
    }
    lines.push_back({p + "registration wall time", format("%.3f s", r.register_s),
                     format("<= %.0f s", kTargetRegisterSeconds),
                     verdict(r.register_s <= kTargetRegisterSeconds), mode + ".register_s",
                     r.register_s});
    lines.push_back({p + "registrations per second", format("%.0f /s", n / r.register_s), "", "",
                     mode + ".registrations_per_s", n / r.register_s});
    lines.push_back({p + "RSS growth after registration", format("%.1f MiB", mib(r.rss_register)),
                     mem_target, verdict(mib(r.rss_register) <= target_mib),
                     mode + ".rss_register_mib", mib(r.rss_register)});
    lines.push_back({p + "  per credential", format("%.0f B", r.rss_register / n), "", "",
                     mode + ".rss_register_bytes_per_credential", r.rss_register / n});
    if (r.peak_register >= 0) {
        lines.push_back({p + "peak RSS growth during registration",
                         format("%.1f MiB", mib(r.peak_register)), "", "",
                         mode + ".peak_register_mib", mib(r.peak_register)});
    }
    lines.push_back({p + "keyturn_engine_start", format("%.3f s", r.start_s), "", "",
                     mode + ".start_s", r.start_s});
    const double rate = r.refresh_s > 0 ? static_cast<double>(r.completed) / r.refresh_s : 0;
    lines.push_back({p + "first refreshes completed",
                     format("%lld / %lld%s", r.completed, r.count, r.timed_out ? " (timeout)" : ""),
                     "all", verdict(r.completed == r.count && r.hook_errors == 0),
                     mode + ".completed", static_cast<double>(r.completed)});
    lines.push_back({p + "time to all first refreshes (incl. start)", format("%.3f s", r.refresh_s),
                     "", "", mode + ".refresh_s", r.refresh_s});
    lines.push_back({p + "refreshes per second", format("%.0f /s", rate),
                     format(">= %.0f /s", kTargetRefreshesPerSecond),
                     verdict(rate >= kTargetRefreshesPerSecond), mode + ".refreshes_per_s", rate});
    lines.push_back({p + "RSS growth with every value held",
                     format("%.1f MiB", mib(r.rss_refreshed)), mem_target,
                     verdict(mib(r.rss_refreshed) <= target_mib), mode + ".rss_refreshed_mib",
                     mib(r.rss_refreshed)});
    lines.push_back({p + "  per credential", format("%.0f B", r.rss_refreshed / n), "", "",
                     mode + ".rss_refreshed_bytes_per_credential", r.rss_refreshed / n});
    lines.push_back({p + "keyturn_engine_free", format("%.3f s", r.free_s), "", "",
                     mode + ".free_s", r.free_s});
}

void print_table(const std::vector<Line> &lines) {
    std::printf("%-52s %20s %16s  %s\n", "metric", "value", "target", "result");
    for (const Line &l : lines) {
        std::printf("%-52s %20s %16s  %s\n", l.metric.c_str(), l.value.c_str(), l.target.c_str(),
                    l.result.c_str());
    }
}

void print_json(const std::vector<Line> &lines, long long count, int threads,
                const std::vector<std::pair<std::string, std::string>> &errors) {
    std::printf("{\"count\":%lld,\"engine_threads\":%d,\"metrics\":{", count,
                threads > 0 ? threads : 1);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        std::printf("%s\"%s\":{\"value\":%.6g", i ? "," : "", lines[i].key.c_str(),
                    lines[i].number);
        if (!lines[i].result.empty()) {
            std::printf(",\"target\":\"%s\",\"result\":\"%s\"", lines[i].target.c_str(),
                        lines[i].result.c_str());
        }
        std::printf("}");
    }
    std::printf("},\"errors\":{");
    for (std::size_t i = 0; i < errors.size(); ++i) {
        std::string text;
        for (char c : errors[i].second) {
            if (c == '"' || c == '\\') text += '\\';
            if (static_cast<unsigned char>(c) >= 0x20) text += c;
        }
        std::printf("%s\"%s\":\"%s\"", i ? "," : "", errors[i].first.c_str(), text.c_str());
    }
    std::printf("}}\n");
}

int usage(const char *self) {
    std::fprintf(stderr,
                 "usage: %s [--count N] [--mode add|config|both] [--threads T] [--timeout S] "
                 "[--json]\n"
                 "  --count N     credentials to register (default 1000000)\n"
                 "  --mode M      how to register them (default both, one child process each)\n"
                 "  --threads T   engine worker threads (default: the engine's default, 1)\n"
                 "  --timeout S   seconds to wait for the first refreshes (default 120)\n"
                 "  --json        print the figures as one JSON object instead of a table\n",
                 self);
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    long long count = 1000000;
    std::string mode = "both";
    int threads = 0;
    double timeout = 120;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--count" && has_value) {
            count = std::atoll(argv[++i]);
        } else if (arg == "--mode" && has_value) {
            mode = argv[++i];
        } else if (arg == "--threads" && has_value) {
            threads = std::atoi(argv[++i]);
        } else if (arg == "--timeout" && has_value) {
            timeout = std::atof(argv[++i]);
        } else if (arg == "--json") {
            json = true;
        } else {
            return usage(argv[0]);
        }
    }
    if (count <= 0 || timeout <= 0 || threads < 0 ||
        (mode != "add" && mode != "config" && mode != "both")) {
        return usage(argv[0]);
    }

    std::vector<std::string> modes;
    if (mode == "both") {
        modes = {"add", "config"};
    } else {
        modes = {mode};
    }

    std::vector<Line> lines;
    std::vector<std::pair<std::string, std::string>> errors;
    for (const std::string &m : modes) {
        const Result r = run_in_child(m, count, threads, timeout);
        if (!r.ok) {
            errors.emplace_back(m, r.error);
            continue;
        }
        add_lines(lines, m, r);
    }

    if (json) {
        print_json(lines, count, threads, errors);
    } else {
        std::printf("keyturn %s: %lld credentials, engine threads %d, %u CPUs\n",
                    keyturn_version_string(), count, threads > 0 ? threads : 1,
                    std::thread::hardware_concurrency());
        print_table(lines);
        for (const auto &[m, e] : errors)
            std::printf("[%s] ERROR: %s\n", m.c_str(), e.c_str());
    }
    return errors.empty() ? 0 : 1;
}
