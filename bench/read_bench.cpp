// Reading a credential's current value through the C ABI, beside the way most code
// keeps a token: a std::string behind a std::mutex, returned by copy.
//
//   read/...                    no writer: the value stays the same during the run.
//   read_with_refresh_1ms/...   a background thread replaces the value about every
//                               millisecond: keyturn_credential_refresh() for keyturn
//                               (the hook answers at once on the engine's worker
//                               thread), an assignment under the lock for the mutex.
//
// Every benchmark uses real time. With N threads Google Benchmark reports the wall
// time of the run divided by the reads of all threads, so "Time" is the inverse of
// the combined throughput; the summary printed at the end also gives the time one
// read takes on one thread (that figure times N).

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "keyturn.h"

namespace {

constexpr std::size_t kBufferSize = 256;
constexpr double kLifetimeSeconds = 3600;
constexpr const char *kCredentialId = "api";
// Two values of 40 bytes; refreshes alternate between them so that each one
// publishes a different value.
constexpr std::string_view kTokens[2] = {
    "tok-0123456789abcdef0123456789abcdef-AAA",
    "tok-fedcba9876543210fedcba9876543210-BBB",
};
static_assert(kTokens[0].size() == 40 && kTokens[1].size() == 40);

// --- keyturn ---------------------------------------------------------------------

keyturn_engine *g_engine = nullptr;
keyturn_credential *g_handle = nullptr;
std::atomic<unsigned long> g_hook_calls{0};
// Values published since the start: by the hook for keyturn, by the writer for the
// mutex. A benchmark reports how many appeared while it ran.
std::atomic<unsigned long> g_new_values{0};

// The refresh hook: answers at once, on the engine's worker thread.
int issue(const char *, size_t, keyturn_completion completion, void *) {
    const unsigned long n = g_hook_calls.fetch_add(1, std::memory_order_relaxed);
    const std::string_view value = kTokens[n % 2];
    const int rc = keyturn_complete_value(completion, value.data(), value.size(), kLifetimeSeconds);
    if (rc == KEYTURN_OK) g_new_values.fetch_add(1, std::memory_order_relaxed);
    return rc;
}

bool fail(const char *what, int rc) {
    std::fprintf(stderr, "read_bench: %s failed: %s: %s\n", what, keyturn_status_name(rc),
                 keyturn_last_error());
    return false;
}

// Creates and starts the engine, opens the handle, and waits until the first
// refresh has published a value.
bool start_keyturn() {
    static constexpr std::string_view config =
        R"({"engine": {"threads": 1},
            "credentials": [{"id": "api", "provider": {"type": "hook", "name": "issuer"},
                             "policy": {"jitter": 0}}]})";
    int rc = keyturn_engine_new(&g_engine, config.data(), config.size());
    if (rc != KEYTURN_OK) return fail("keyturn_engine_new", rc);
    rc = keyturn_hook_register(g_engine, "issuer", issue, nullptr, nullptr);
    if (rc != KEYTURN_OK) return fail("keyturn_hook_register", rc);
    rc = keyturn_engine_start(g_engine);
    if (rc != KEYTURN_OK) return fail("keyturn_engine_start", rc);
    rc = keyturn_credential_open(&g_handle, g_engine, kCredentialId);
    if (rc != KEYTURN_OK) return fail("keyturn_credential_open", rc);

    char buf[kBufferSize];
    std::size_t len = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        rc = keyturn_credential_read(g_handle, buf, sizeof buf, &len, nullptr);
        if (rc == KEYTURN_OK) break;
        if (rc != KEYTURN_E_NOT_READY || std::chrono::steady_clock::now() > deadline) {
            return fail("waiting for the first value", rc);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (std::string_view(buf, len) != kTokens[0]) {
        std::fprintf(stderr, "read_bench: the first value read is not the one issued\n");
        return false;
    }
    return true;
}

void stop_keyturn() {
    keyturn_credential_close(g_handle);
    keyturn_engine_free(g_engine);
}

// --- the baseline ----------------------------------------------------------------

// A token as most code keeps one.
class MutexToken {
  public:
    std::string get() const {
        std::lock_guard l(mutex_);
        return token_;
    }
    void set(std::string token) {
        std::lock_guard l(mutex_);
        token_.swap(token);
    }

  private:
    mutable std::mutex mutex_;
    std::string token_{kTokens[0]};
};

MutexToken g_mutex_token;

// --- the background writer -------------------------------------------------------

// Replaces the value about every millisecond while a benchmark runs; started and
// stopped by Setup/Teardown, once per run whatever the number of reader threads.
class Writer {
  public:
    template <class Step>
    void start(Step step) {
        stop_.store(false);
        thread_ = std::thread([this, step] {
            for (unsigned long n = 1; !stop_.load(std::memory_order_relaxed); ++n) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                step(n);
            }
        });
    }
    void stop() {
        stop_.store(true);
        thread_.join();
    }

  private:
    std::thread thread_;
    std::atomic<bool> stop_{false};
};

Writer g_writer;
std::atomic<int> g_writer_errors{0};

void start_keyturn_refresher(const benchmark::State &) {
    g_writer.start([](unsigned long) {
        if (keyturn_credential_refresh(g_engine, kCredentialId) != KEYTURN_OK) ++g_writer_errors;
    });
}

void start_mutex_writer(const benchmark::State &) {
    g_writer.start([](unsigned long n) {
        g_mutex_token.set(std::string(kTokens[n % 2]));
        g_new_values.fetch_add(1, std::memory_order_relaxed);
    });
}

void stop_writer(const benchmark::State &) {
    g_writer.stop();
}

// --- the benchmarks --------------------------------------------------------------

// Called by every thread before its loop; thread 0 notes the values published so far.
unsigned long values_before(const benchmark::State &state) {
    return state.thread_index() == 0 ? g_new_values.load() : 0;
}

// Reads per second, and (thread 0) new values per second while the benchmark ran: 0
// without a writer, about 1000 with one.
void report(benchmark::State &state, unsigned long failures, unsigned long before) {
    if (failures != 0) {
        state.SkipWithError("a read failed");
        return;
    }
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        state.counters["new_values"] = benchmark::Counter(
            static_cast<double>(g_new_values.load() - before), benchmark::Counter::kIsRate);
    }
}

// (a) The hot path: a handle, a 256-byte buffer, a 40-byte value.
void BM_HandleRead(benchmark::State &state) {
    alignas(64) char buf[kBufferSize];
    std::size_t len = 0;
    unsigned flags = 0;
    unsigned long failures = 0;
    const unsigned long before = values_before(state);
    for (auto _ : state) {
        int rc = keyturn_credential_read(g_handle, buf, sizeof buf, &len, &flags);
        benchmark::DoNotOptimize(rc);
        benchmark::DoNotOptimize(buf);
        benchmark::ClobberMemory();
        if (rc != KEYTURN_OK) ++failures;
    }
    report(state, failures, before);
}

// (b) By id: a lookup under the engine's lock on every read.
void BM_ReadById(benchmark::State &state) {
    alignas(64) char buf[kBufferSize];
    std::size_t len = 0;
    unsigned flags = 0;
    unsigned long failures = 0;
    const unsigned long before = values_before(state);
    for (auto _ : state) {
        int rc = keyturn_read(g_engine, kCredentialId, buf, sizeof buf, &len, &flags);
        benchmark::DoNotOptimize(rc);
        benchmark::DoNotOptimize(buf);
        benchmark::ClobberMemory();
        if (rc != KEYTURN_OK) ++failures;
    }
    report(state, failures, before);
}

// (c) The baseline: lock, copy the 40-byte string (which allocates), unlock; the
// copy is freed at the end of each iteration, as a caller's would be.
void BM_MutexString(benchmark::State &state) {
    unsigned long failures = 0;
    const unsigned long before = values_before(state);
    for (auto _ : state) {
        std::string token = g_mutex_token.get();
        benchmark::DoNotOptimize(token.data());
        benchmark::ClobberMemory();
        if (token.size() != 40) ++failures;
    }
    report(state, failures, before);
}

void read_args(benchmark::internal::Benchmark *b) {
    b->Threads(1)->Threads(2)->UseRealTime()->Unit(benchmark::kNanosecond);
}

BENCHMARK(BM_HandleRead)->Name("read/keyturn_credential_read")->Apply(read_args);
BENCHMARK(BM_ReadById)->Name("read/keyturn_read_by_id")->Apply(read_args);
BENCHMARK(BM_MutexString)->Name("read/mutex_string_copy")->Apply(read_args);

// (d) The same with a writer replacing the value about every millisecond.
BENCHMARK(BM_HandleRead)
    ->Name("read_with_refresh_1ms/keyturn_credential_read")
    ->Apply(read_args)
    ->Setup(start_keyturn_refresher)
    ->Teardown(stop_writer);
BENCHMARK(BM_MutexString)
    ->Name("read_with_refresh_1ms/mutex_string_copy")
    ->Apply(read_args)
    ->Setup(start_mutex_writer)
    ->Teardown(stop_writer);

// --- the summary against the targets ---------------------------------------------

struct Figure {
    double ns_per_read = 0;  // wall time of the run / reads of all threads
    double reads_per_second = 0;
    long threads = 1;
    // CPU time of the reader threads / (wall time x threads): near 1 when every reader
    // ran all along; lower when they waited (on a lock) or another process had the CPU.
    double cpu_share = 0;
};

// Prints what the console reporter prints, and keeps each run's figure for the
// summary (the median when repetitions are asked for).
class SummaryReporter : public benchmark::ConsoleReporter {
  public:
    explicit SummaryReporter(OutputOptions options) : ConsoleReporter(options) {}

    void ReportRuns(const std::vector<Run> &runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const Run &run : runs) {
            if (run.error_occurred) continue;
            const bool aggregate = run.run_type == Run::RT_Aggregate;
            if (aggregate && run.aggregate_name != "median") continue;
            auto key = std::make_pair(run.run_name.function_name, static_cast<long>(run.threads));
            if (!aggregate && medians_.count(key) != 0) continue;
            Figure f;
            f.threads = run.threads;
            f.ns_per_read = run.GetAdjustedRealTime();
            f.reads_per_second = f.ns_per_read > 0 ? 1e9 / f.ns_per_read : 0;
            f.cpu_share =
                f.ns_per_read > 0 ? run.GetAdjustedCPUTime() / (f.ns_per_read * f.threads) : 0;
            figures_[key] = f;
            if (aggregate) medians_[key] = true;
        }
    }

    const Figure *find(const std::string &name, long threads) const {
        auto it = figures_.find({name, threads});
        return it == figures_.end() ? nullptr : &it->second;
    }

    void print_summary() const {
        std::printf(
            "\nSummary: ns/read = wall time / reads of all threads; ns/read/thread = that x "
            "threads;\ncpu share = CPU time of the readers / (wall time x threads), low when "
            "they waited or lost their core\n");
        std::printf("%-48s %7s %10s %12s %15s %9s\n", "benchmark", "threads", "ns/read", "reads/s",
                    "ns/read/thread", "cpu share");
        for (const auto &[key, f] : figures_) {
            std::printf("%-48s %7ld %10.2f %12.0f %15.2f %9.2f\n", key.first.c_str(), key.second,
                        f.ns_per_read, f.reads_per_second, f.ns_per_read * f.threads, f.cpu_share);
        }

        std::printf("\n%-58s %14s %22s %s\n", "target", "value", "target", "result");
        const Figure *one = find("read/keyturn_credential_read", 1);
        line("keyturn_credential_read, 1 thread", one ? one->ns_per_read : NAN, "ns", "<= 50 ns",
             one && one->ns_per_read <= 50);
        compare("read", "no writer");
        compare("read_with_refresh_1ms", "writer every 1 ms");
    }

  private:
    static void line(const std::string &what, double value, const char *unit,
                     const std::string &target, bool pass) {
        char text[64] = "not run";
        if (!std::isnan(value)) std::snprintf(text, sizeof text, "%.2f %s", value, unit);
        std::printf("%-58s %14s %22s %s\n", what.c_str(), text, target.c_str(),
                    std::isnan(value) ? "n/a"
                    : pass            ? "PASS"
                                      : "MISS");
    }

    // keyturn_credential_read against the mutex baseline, both on two threads.
    void compare(const std::string &group, const std::string &label) const {
        const Figure *k = find(group + "/keyturn_credential_read", 2);
        const Figure *m = find(group + "/mutex_string_copy", 2);
        if (k == nullptr || m == nullptr) return;
        char target[64];
        std::snprintf(target, sizeof target, "< mutex %.2f ns", m->ns_per_read);
        line("keyturn_credential_read vs mutex, 2 threads, " + label, k->ns_per_read, "ns", target,
             k->ns_per_read < m->ns_per_read);
    }

    std::map<std::pair<std::string, long>, Figure> figures_;
    std::map<std::pair<std::string, long>, bool> medians_;
};

}  // namespace

int main(int argc, char **argv) {
    // A format other than the console's gets the library's own reporter and no
    // summary.
    bool console = true;
    bool color = ::isatty(STDOUT_FILENO) != 0;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg.rfind("--benchmark_format=", 0) == 0 && arg != "--benchmark_format=console") {
            console = false;
        }
        if (arg == "--benchmark_color=false" || arg == "--benchmark_color=no") color = false;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    if (!start_keyturn()) return 1;
    // Notes go to stderr when stdout carries JSON or CSV.
    FILE *notes = console ? stdout : stderr;
    std::fprintf(notes, "keyturn %s, value %zu bytes, buffer %zu bytes, lifetime %.0f s\n",
                 keyturn_version_string(), kTokens[0].size(), kBufferSize, kLifetimeSeconds);
    std::fflush(notes);

    if (console) {
        SummaryReporter reporter(color ? benchmark::ConsoleReporter::OO_ColorTabular
                                       : benchmark::ConsoleReporter::OO_Tabular);
        benchmark::RunSpecifiedBenchmarks(&reporter);
        reporter.print_summary();
    } else {
        benchmark::RunSpecifiedBenchmarks();
    }
    benchmark::Shutdown();

    const int writer_errors = g_writer_errors.load();
    const unsigned long hook_calls = g_hook_calls.load();
    stop_keyturn();
    std::fprintf(notes, "hook calls (refreshes) during the run: %lu\n", hook_calls);
    if (writer_errors != 0) {
        std::fprintf(stderr, "read_bench: %d background refreshes failed\n", writer_errors);
        return 1;
    }
    return 0;
}
