#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/exec_provider.hpp"
#include "core/exec_runner.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;
using End = ExecResult::End;

constexpr std::string_view kSecret = "kt-secret-EXEC-7f3a";
constexpr std::string_view kRefreshSecret = "kt-secret-EXEC-refresh-91c2";

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

std::string read_file(const std::filesystem::path &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// True once `pid` is no longer running: gone, or a zombie waiting for init to reap it.
bool process_is_gone(pid_t pid) {
    for (int i = 0; i < 200; ++i) {
        if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
        std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
        auto close_paren = stat.rfind(')');
        if (close_paren != std::string::npos && close_paren + 2 < stat.size() &&
            stat[close_paren + 2] == 'Z') {
            return true;
        }
        std::this_thread::sleep_for(10ms);  // bounded: at most 2 s in all
    }
    return false;
}

struct Finished {
    bool done = false;
    ExecResult result;
    std::vector<std::string> stderr_lines;
};

class ExecRunnerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string pattern = (std::filesystem::temp_directory_path() / "keyturn-exec-XXXXXX");
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }

    void TearDown() override {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        // Every run reaped its program: the test process has no child left at all.
        errno = 0;
        EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
        EXPECT_EQ(errno, ECHILD);
    }

    // Writes a /bin/sh script into the test's directory, executable by its owner only.
    std::string script(const std::string &name, const std::string &body) {
        std::filesystem::path path = dir_ / name;
        std::ofstream(path) << "#!/bin/sh\n" << body;
        ::chmod(path.c_str(), 0700);
        return path;
    }

    ExecCommand command(std::vector<std::string> argv, Duration timeout = 5s) {
        ExecCommand c;
        c.argv = std::move(argv);
        c.timeout = timeout;
        return c;
    }

    // Runs one program to its end on a local io_context, bounded in time.
    Finished run(ExecCommand c, std::string_view input = {}, std::vector<SecretBytes> redact = {}) {
        boost::asio::io_context io;
        Finished f;
        run_exec(
            io, std::move(c), ScrubbedString(std::string(input)), std::move(redact),
            [&f](std::string line) { f.stderr_lines.push_back(std::move(line)); },
            [&f](ExecResult r) {
                f.done = true;
                f.result = std::move(r);
            });
        io.run_for(9s);
        EXPECT_TRUE(f.done);
        return f;
    }

    std::filesystem::path dir_;
};

TEST_F(ExecRunnerTest, PassesStdinToTheProgramAndCollectsItsStdout) {
    std::string hook = script("echo.sh", "cat\n");
    Finished f = run(command({hook}), "hello from stdin\n");
    EXPECT_EQ(f.result.end, End::exited);
    EXPECT_EQ(f.result.exit_code, 0);
    EXPECT_EQ(f.result.output.str(), "hello from stdin\n");
}

TEST_F(ExecRunnerTest, ReportsANonZeroExitStatus) {
    std::string hook = script("fail.sh", "exit 3\n");
    Finished f = run(command({hook}));
    EXPECT_EQ(f.result.end, End::exited);
    EXPECT_EQ(f.result.exit_code, 3);
    EXPECT_EQ(describe_exec_failure(command({hook}), "test", f.result),
              "exec hook \"" + hook + "\" (step \"test\"): exited with status 3");
}

TEST_F(ExecRunnerTest, ReportsDeathBySignal) {
    std::string hook = script("killed.sh", "kill -TERM $$\nsleep 5\n");
    Finished f = run(command({hook}));
    EXPECT_EQ(f.result.end, End::signalled);
    EXPECT_EQ(f.result.signal, SIGTERM);
    EXPECT_TRUE(contains(describe_exec_failure(command({hook}), "refresh", f.result),
                         "was killed by signal 15 (SIGTERM)"));
}

TEST_F(ExecRunnerTest, CollectsOutputThatIsNotJsonAsIs) {
    std::string hook = script("garbage.sh", "printf 'not json \\001 at all'\n");
    Finished f = run(command({hook}));
    EXPECT_EQ(f.result.end, End::exited);
    EXPECT_EQ(f.result.output.str(), "not json \001 at all");
}

TEST_F(ExecRunnerTest, TimeoutKillsTheWholeProcessGroup) {
    std::string hook = script("hang.sh", "sleep 30 &\necho $! > \"$1\"\nsleep 30\n");
    std::filesystem::path pid_file = dir_ / "grandchild.pid";

    auto started = std::chrono::steady_clock::now();
    Finished f = run(command({hook, pid_file}, 1s));
    auto took = std::chrono::steady_clock::now() - started;

    EXPECT_EQ(f.result.end, End::timed_out);
    EXPECT_LT(took, 5s);
    EXPECT_EQ(
        describe_exec_failure(command({hook}, 1s), "test", f.result),
        "exec hook \"" + hook + "\" (step \"test\"): timed out after 1s (process group killed)");
    pid_t grandchild = std::atoi(read_file(pid_file).c_str());
    ASSERT_GT(grandchild, 0);
    EXPECT_TRUE(process_is_gone(grandchild));
}

TEST_F(ExecRunnerTest, ABackgroundChildHoldingStdoutEndsAtTheTimeout) {
    // The program exits at once, but the child it leaves behind keeps stdout open.
    std::string hook = script("leave.sh", "sleep 30 &\necho $! > \"$1\"\nexit 0\n");
    std::filesystem::path pid_file = dir_ / "straggler.pid";
    Finished f = run(command({hook, pid_file}, 1s));
    EXPECT_EQ(f.result.end, End::timed_out);
    pid_t straggler = std::atoi(read_file(pid_file).c_str());
    ASSERT_GT(straggler, 0);
    EXPECT_TRUE(process_is_gone(straggler));
}

TEST_F(ExecRunnerTest, OutputOverTheCapKillsTheGroup) {
    std::string hook = script("flood.sh", "head -c 2097152 /dev/zero\nsleep 30\n");
    Finished f = run(command({hook}));
    EXPECT_EQ(f.result.end, End::output_too_large);
    EXPECT_LE(f.result.output.str().size(), std::size_t{1} << 20);
    EXPECT_TRUE(contains(describe_exec_failure(command({hook}), "test", f.result),
                         "wrote more than 1048576 bytes"));
}

TEST_F(ExecRunnerTest, OutputExactlyAtTheCapIsAccepted) {
    std::string hook = script("exact.sh", "head -c 1000 /dev/zero\n");
    ExecCommand c = command({hook});
    c.max_output = 1000;
    Finished f = run(std::move(c));
    EXPECT_EQ(f.result.end, End::exited);
    EXPECT_EQ(f.result.output.str().size(), 1000u);
}

TEST_F(ExecRunnerTest, StderrLinesAreRedactedAndEscaped) {
    std::string hook = script(
        "noisy.sh",
        "cat > /dev/null\necho \"token is $1 here\" >&2\nprintf 'bell\\007 and no newline' >&2\n");
    // The secret reaches the script as an argument here only so that it can print it;
    // the runner never puts one there.
    Finished f = run(command({hook, std::string(kSecret)}), "input",
                     {SecretBytes(kSecret), SecretBytes("abc")});
    ASSERT_EQ(f.stderr_lines.size(), 2u);
    std::string marker = "[secret " + SecretBytes(kSecret).fingerprint() + "]";
    EXPECT_EQ(f.stderr_lines[0], "token is " + marker + " here");
    EXPECT_EQ(f.stderr_lines[1], "bell\\x07 and no newline");
    for (const std::string &line : f.stderr_lines)
        EXPECT_FALSE(contains(line, kSecret));
}

TEST_F(ExecRunnerTest, StderrIsCappedPerLineAndPerRun) {
    // A line of 4090 bytes and then the secret: the cut at 4096 bytes falls inside it.
    std::string hook = script("chatty.sh",
                              "printf '%4090s' '' | tr ' ' a >&2\necho \"$1\" >&2\n"
                              "i=0\nwhile [ $i -lt 1000 ]; do echo \"line $i\" >&2; "
                              "i=$((i+1)); done\n");
    Finished f = run(command({hook, std::string(kSecret)}), {}, {SecretBytes(kSecret)});
    EXPECT_EQ(f.result.end, End::exited);
    ASSERT_EQ(f.stderr_lines.size(), kExecStderrLines + 1);
    const std::string &cut = f.stderr_lines[0];
    EXPECT_TRUE(contains(cut, "[secret " + SecretBytes(kSecret).fingerprint() + "]"));
    EXPECT_TRUE(contains(cut, " [line truncated]"));
    EXPECT_FALSE(contains(cut, kSecret.substr(0, 6)));
    EXPECT_EQ(f.stderr_lines.back(), "[stderr truncated]");
}

TEST_F(ExecRunnerTest, SecretsNeverReachArgumentsOrEnvironment) {
    ASSERT_EQ(::setenv("KEYTURN_TEST_LEAK", "kt-secret-ENV-5d1e", 1), 0);
    std::string hook = script("inspect.sh",
                              "cat > /dev/null\n"
                              "echo \"argv: $0 $*\"\n"
                              "tr '\\000' ' ' < /proc/$$/cmdline; echo\n"
                              "tr '\\000' '\\n' < /proc/$$/environ\n");
    ExecCommand c = command({hook, "--plain-argument"});
    c.env = {{"KEYTURN_EXTRA", "visible"}};
    ScrubbedString request(std::string("{\"value\":\"") + std::string(kSecret) + "\"}");
    Finished f = run(std::move(c), request.str());
    ::unsetenv("KEYTURN_TEST_LEAK");

    const std::string &out = f.result.output.str();
    EXPECT_EQ(f.result.end, End::exited);
    EXPECT_TRUE(contains(out, "--plain-argument"));
    EXPECT_FALSE(contains(out, kSecret));
    EXPECT_FALSE(contains(out, "KEYTURN_TEST_LEAK"));
    EXPECT_FALSE(contains(out, "kt-secret-ENV"));
    EXPECT_TRUE(contains(out, "\nKEYTURN_EXTRA=visible\n"));
    EXPECT_TRUE(contains(out, "\nPATH="));

    // The program's initial environment holds only the documented names.
    std::istringstream lines(out);
    std::string line;
    std::getline(lines, line);  // argv
    std::getline(lines, line);  // cmdline
    while (std::getline(lines, line)) {
        if (line.empty()) continue;
        std::string name = line.substr(0, line.find('='));
        EXPECT_TRUE(name == "PATH" || name == "HOME" || name == "LANG" || name == "LC_ALL" ||
                    name == "TZ" || name == "TMPDIR" || name == "KEYTURN_EXTRA")
            << name;
    }
}

TEST_F(ExecRunnerTest, OnlyTheStandardDescriptorsAreInherited) {
    // Opened without O_CLOEXEC, as careless code elsewhere in an application might.
    int leaked = ::open("/dev/null", O_RDONLY);
    ASSERT_GE(leaked, 3);
    if (leaked >= 10) {
        ::close(leaked);
        GTEST_SKIP() << "the shell keeps its own descriptors from 10 up";
    }
    std::string hook = script("fds.sh",
                              "for fd in 0 1 2 \"$1\"; do\n"
                              "  if [ -e /proc/$$/fd/$fd ]; then echo \"$fd open\"; "
                              "else echo \"$fd closed\"; fi\ndone\n");
    Finished f = run(command({hook, std::to_string(leaked)}));
    ::close(leaked);
    EXPECT_EQ(f.result.output.str(),
              "0 open\n1 open\n2 open\n" + std::to_string(leaked) + " closed\n");
}

TEST_F(ExecRunnerTest, AProgramThatIgnoresItsInputIsNotAnError) {
    // Far more than a pipe holds: the write meets a closed pipe (EPIPE, and SIGPIPE,
    // which must not end this process).
    std::string hook = script("ignore.sh", "exit 0\n");
    std::string input(8u << 20, 'x');
    Finished f = run(command({hook}), input);
    EXPECT_EQ(f.result.end, End::exited);
    EXPECT_EQ(f.result.exit_code, 0);
}

TEST_F(ExecRunnerTest, RunsInTheGivenWorkingDirectory) {
    std::string hook = script("pwd.sh", "pwd\n");
    ExecCommand c = command({hook});
    c.working_directory = dir_;
    Finished f = run(std::move(c));
    EXPECT_EQ(f.result.output.str(), std::filesystem::canonical(dir_).string() + "\n");
}

TEST_F(ExecRunnerTest, AMissingProgramFailsToSpawn) {
    ExecCommand c = command({(dir_ / "no-such-hook").string()});
    Finished f = run(c);
    EXPECT_EQ(f.result.end, End::spawn_failed);
    EXPECT_EQ(f.result.error, "No such file or directory");
    EXPECT_EQ(describe_exec_failure(c, "test", f.result),
              "exec hook \"" + c.argv[0] +
                  "\" (step \"test\"): could not be started: No such file or directory");
}

TEST_F(ExecRunnerTest, AProgramThatIsNotExecutableFailsToSpawn) {
    std::string hook = script("plain.sh", "exit 0\n");
    ::chmod(hook.c_str(), 0600);
    Finished f = run(command({hook}));
    EXPECT_EQ(f.result.end, End::spawn_failed);
    EXPECT_EQ(f.result.error, "Permission denied");
}

TEST_F(ExecRunnerTest, ManyRunsOnTwoThreads) {
    std::string hook = script("echo.sh", "cat\necho err >&2\n");
    boost::asio::io_context io;
    constexpr int kRuns = 12;
    std::mutex mutex;
    std::vector<std::string> outputs;
    std::atomic<int> lines{0};
    for (int i = 0; i < kRuns; ++i) {
        run_exec(
            io, command({hook}), ScrubbedString("run " + std::to_string(i)), {},
            [&lines](std::string) { ++lines; },
            [&](ExecResult r) {
                std::lock_guard lock(mutex);
                outputs.push_back(r.end == End::exited ? r.output.str() : "failed");
            });
    }
    std::thread second([&io] { io.run_for(9s); });
    io.run_for(9s);
    second.join();

    ASSERT_EQ(outputs.size(), std::size_t{kRuns});
    std::sort(outputs.begin(), outputs.end());
    for (int i = 0; i < kRuns; ++i)
        EXPECT_NE(std::find(outputs.begin(), outputs.end(), "run " + std::to_string(i)),
                  outputs.end());
    EXPECT_EQ(lines.load(), kRuns);
}

// ---- the exec provider

class Collector final : public CompletionTarget {
  public:
    Status on_outcome(std::uint32_t, std::uint64_t, RefreshOutcome &&outcome) override {
        std::lock_guard lock(mutex_);
        outcome_ = std::move(outcome);
        ++count_;
        return Status::ok;
    }
    Status on_step_outcome(std::uint32_t, std::uint64_t, StepOutcome &&) override {
        return Status::invalid_argument;
    }
    std::optional<RefreshOutcome> take() {
        std::lock_guard lock(mutex_);
        return std::move(outcome_);
    }
    int count() {
        std::lock_guard lock(mutex_);
        return count_;
    }

  private:
    std::mutex mutex_;
    std::optional<RefreshOutcome> outcome_;
    int count_ = 0;
};

class ExecProviderTest : public ExecRunnerTest {
  protected:
    // Refreshes credential "db", whose current value and refresh material are secrets.
    RefreshOutcome refresh(const std::string &hook) {
        boost::asio::io_context io;
        ExecProvider provider(io, command({hook}, 5s), [this](LogLevel level, std::string line) {
            std::lock_guard lock(log_mutex_);
            log_.emplace_back(level, std::move(line));
        });

        Snapshot current;
        current.value = SecretBytes(kSecret);
        current.version = 4;
        SecretBytes refresh_material(kRefreshSecret);
        Metadata metadata{{"scope", "read"}};
        RefreshRequest request;
        request.credential = "db";
        request.reason = "scheduled";
        request.current = &current;
        request.refresh = &refresh_material;
        request.metadata = &metadata;

        auto target = std::make_shared<Collector>();
        provider.refresh(request, Completion(completions::open(target, 0)));
        io.run_for(9s);
        EXPECT_EQ(target->count(), 1);
        auto outcome = target->take();
        if (!outcome) return RefreshFailure{"no outcome", FailureAction::give_up, std::nullopt};
        return std::move(*outcome);
    }

    std::mutex log_mutex_;
    std::vector<std::pair<LogLevel, std::string>> log_;
};

TEST_F(ExecProviderTest, AValidResultIsASuccessAndTheRequestNamesTheStep) {
    std::filesystem::path saved = dir_ / "request.json";
    std::string hook = script("ok.sh", "cat > \"" + saved.string() +
                                           "\"\necho '{\"value\":\"kt-secret-EXEC-new-0b7e\","
                                           "\"expires_in\":60}'\n");
    RefreshOutcome outcome = refresh(hook);

    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(outcome));
    auto &success = std::get<RefreshSuccess>(outcome);
    EXPECT_EQ(success.value.reveal(), "kt-secret-EXEC-new-0b7e");
    EXPECT_EQ(success.expires_in, 60s);

    std::string request = read_file(saved);
    std::filesystem::remove(saved);
    EXPECT_TRUE(contains(request, "\"step\":\"refresh\""));
    EXPECT_TRUE(contains(request, "\"credential\":\"db\""));
    EXPECT_TRUE(contains(request, "\"reason\":\"scheduled\""));
    cleanse(request);
}

TEST_F(ExecProviderTest, GarbageOutputFailsNamingTheHookAndTheStep) {
    std::string hook = script("garbage.sh", "cat > /dev/null\necho 'kt-secret-GARBAGE not json'\n");
    RefreshOutcome outcome = refresh(hook);

    ASSERT_TRUE(std::holds_alternative<RefreshFailure>(outcome));
    auto &failure = std::get<RefreshFailure>(outcome);
    EXPECT_EQ(failure.action, FailureAction::retry);
    EXPECT_TRUE(contains(failure.reason, "exec hook \"" + hook + "\" (step \"refresh\")"))
        << failure.reason;
    EXPECT_TRUE(contains(failure.reason, "not valid JSON")) << failure.reason;
    EXPECT_FALSE(contains(failure.reason, "kt-secret-GARBAGE"));
}

TEST_F(ExecProviderTest, AnInvalidResultFailsWithWhatIsWrong) {
    std::string hook = script("invalid.sh", "cat > /dev/null\necho '{\"value\":\"v-12345\"}'\n");
    RefreshOutcome outcome = refresh(hook);
    auto &failure = std::get<RefreshFailure>(outcome);
    EXPECT_TRUE(contains(failure.reason, "(step \"refresh\")")) << failure.reason;
    EXPECT_TRUE(contains(failure.reason, "expires_in: is required")) << failure.reason;
    EXPECT_FALSE(contains(failure.reason, "v-12345"));
}

TEST_F(ExecProviderTest, AReportedFailureIsPassedOn) {
    std::string hook = script(
        "denied.sh", "cat > /dev/null\necho '{\"error\":\"HTTP 401\",\"action\":\"login\"}'\n");
    RefreshOutcome outcome = refresh(hook);
    auto &failure = std::get<RefreshFailure>(outcome);
    EXPECT_EQ(failure.reason, "HTTP 401");
    EXPECT_EQ(failure.action, FailureAction::login);
}

TEST_F(ExecProviderTest, ANonZeroExitIsARetriableFailure) {
    std::string hook = script("fail.sh", "cat > /dev/null\nexit 3\n");
    RefreshOutcome outcome = refresh(hook);
    auto &failure = std::get<RefreshFailure>(outcome);
    EXPECT_EQ(failure.reason,
              "exec hook \"" + hook + "\" (step \"refresh\"): exited with status 3");
    EXPECT_EQ(failure.action, FailureAction::retry);
}

TEST_F(ExecProviderTest, AMissingProgramIsARetriableFailure) {
    RefreshOutcome outcome = refresh((dir_ / "absent").string());
    auto &failure = std::get<RefreshFailure>(outcome);
    EXPECT_TRUE(contains(failure.reason, "could not be started: No such file or directory"));
    EXPECT_EQ(failure.action, FailureAction::retry);
}

TEST_F(ExecProviderTest, StderrIsLoggedAsWarningsWithSecretsRedacted) {
    // The whole request, current value and refresh material included, goes to stderr.
    std::string hook = script("leaky.sh", "cat >&2\necho >&2\nexit 1\n");
    RefreshOutcome outcome = refresh(hook);
    ASSERT_TRUE(std::holds_alternative<RefreshFailure>(outcome));

    std::lock_guard lock(log_mutex_);
    ASSERT_FALSE(log_.empty());
    const std::string prefix = "credential \"db\": exec hook \"" + hook + "\" (step \"refresh\"): ";
    bool saw_request = false;
    for (const auto &[level, line] : log_) {
        EXPECT_EQ(level, LogLevel::warning);
        EXPECT_EQ(line.rfind(prefix, 0), 0u) << line;
        EXPECT_FALSE(contains(line, kSecret)) << line;
        EXPECT_FALSE(contains(line, kRefreshSecret)) << line;
        if (contains(line, "\"step\":\"refresh\"")) {
            saw_request = true;
            EXPECT_TRUE(contains(line, "[secret " + SecretBytes(kSecret).fingerprint() + "]"));
            EXPECT_TRUE(
                contains(line, "[secret " + SecretBytes(kRefreshSecret).fingerprint() + "]"));
        }
    }
    EXPECT_TRUE(saw_request);
}

}  // namespace
}  // namespace keyturn
