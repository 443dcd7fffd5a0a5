#include "core/exec_runner.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "core/hook_provider.hpp"

namespace keyturn {

namespace asio = boost::asio;

namespace {

using Strand = asio::strand<asio::io_context::executor_type>;
using End = ExecResult::End;

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::size_t kWriteChunk = 64 * 1024;
constexpr std::size_t kMinRedacted = 4;
// Used when pidfd_open is not available (kernels before 5.3, or seccomp filters).
constexpr auto kExitPollInterval = std::chrono::milliseconds(20);

std::string errno_text(int err) {
    char buffer[256];
    // The GNU strerror_r returns a pointer that may or may not point into `buffer`.
    return strerror_r(err, buffer, sizeof buffer);
}

class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd &operator=(UniqueFd &&other) noexcept {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~UniqueFd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

// A descriptor of 3 or more. If this process runs with 0, 1 or 2 closed, a new pipe
// may land there, and dup2 onto the same number would leave close-on-exec set.
bool move_above_stdio(UniqueFd &fd) {
    if (fd.get() > 2) return true;
    int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return false;
    fd.reset(moved);
    return true;
}

// Both ends close on exec: no other program this process starts, concurrently on
// another thread, can inherit them. dup2 in the child clears the flag on 0, 1 and 2.
bool make_pipe(UniqueFd &read_end, UniqueFd &write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
    return move_above_stdio(read_end) && move_above_stdio(write_end);
}

bool set_non_blocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

bool valid_env_name(std::string_view name) {
    return !name.empty() && name.find('=') == std::string_view::npos &&
           name.find('\0') == std::string_view::npos;
}

// The minimal environment described in exec_runner.hpp, as NAME=value strings.
std::optional<std::vector<std::string>> build_environment(const ExecCommand &command,
                                                          std::string &error) {
    std::map<std::string, std::string> vars;
    for (const char *name : {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}) {
        if (const char *value = std::getenv(name)) vars.emplace(name, value);
    }
    vars.emplace("PATH", "/usr/local/bin:/usr/bin:/bin");  // no effect when already set
    for (const auto &[name, value] : command.env) {
        if (!valid_env_name(name) || value.find('\0') != std::string::npos) {
            error = "invalid environment variable name or value";
            return std::nullopt;
        }
        vars.insert_or_assign(name, value);
    }
    std::vector<std::string> out;
    out.reserve(vars.size());
    for (const auto &[name, value] : vars)
        out.push_back(name + '=' + value);
    return out;
}

struct Spawned {
    pid_t pid = -1;
    UniqueFd stdin_write, stdout_read, stderr_read;
};

class SpawnSetup {
  public:
    SpawnSetup() {
        actions_ok_ = ::posix_spawn_file_actions_init(&actions_) == 0;
        attr_ok_ = ::posix_spawnattr_init(&attr_) == 0;
    }
    ~SpawnSetup() {
        if (actions_ok_) ::posix_spawn_file_actions_destroy(&actions_);
        if (attr_ok_) ::posix_spawnattr_destroy(&attr_);
    }
    SpawnSetup(const SpawnSetup &) = delete;
    SpawnSetup &operator=(const SpawnSetup &) = delete;

    bool ok() const noexcept { return actions_ok_ && attr_ok_; }
    posix_spawn_file_actions_t *actions() noexcept { return &actions_; }
    posix_spawnattr_t *attr() noexcept { return &attr_; }

  private:
    posix_spawn_file_actions_t actions_;
    posix_spawnattr_t attr_;
    bool actions_ok_ = false;
    bool attr_ok_ = false;
};

// Returns an errno value (0 on success), as the posix_spawn family does.
int prepare(SpawnSetup &setup, const ExecCommand &command, const UniqueFd &child_stdin,
            const UniqueFd &child_stdout, const UniqueFd &child_stderr) {
    if (!setup.ok()) return ENOMEM;
    posix_spawn_file_actions_t *fa = setup.actions();
    if (int rc = ::posix_spawn_file_actions_adddup2(fa, child_stdin.get(), 0)) return rc;
    if (int rc = ::posix_spawn_file_actions_adddup2(fa, child_stdout.get(), 1)) return rc;
    if (int rc = ::posix_spawn_file_actions_adddup2(fa, child_stderr.get(), 2)) return rc;
    // Descriptors that other parts of the application opened without close-on-exec
    // would otherwise reach the hook.
    if (int rc = ::posix_spawn_file_actions_addclosefrom_np(fa, 3)) return rc;
    if (!command.working_directory.empty()) {
        if (int rc = ::posix_spawn_file_actions_addchdir_np(fa, command.working_directory.c_str()))
            return rc;
    }

    posix_spawnattr_t *attr = setup.attr();
    // A process group of its own (pgid = its pid), so that one kill reaches its children.
    if (int rc = ::posix_spawnattr_setpgroup(attr, 0)) return rc;
    // The application may block or ignore signals for itself (SIGPIPE is often
    // ignored); the hook starts with the defaults.
    sigset_t none;
    sigemptyset(&none);
    if (int rc = ::posix_spawnattr_setsigmask(attr, &none)) return rc;
    sigset_t standard;
    sigemptyset(&standard);
    for (int sig = 1; sig < 32; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaddset(&standard, sig);
    }
    if (int rc = ::posix_spawnattr_setsigdefault(attr, &standard)) return rc;
    return ::posix_spawnattr_setflags(
        attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

std::optional<Spawned> spawn(const ExecCommand &command, std::string &error) {
    if (command.argv.empty() || command.argv[0].empty()) {
        error = "no program was given";
        return std::nullopt;
    }
    for (const std::string &arg : command.argv) {
        if (arg.find('\0') != std::string::npos) {
            error = "an argument contains a NUL byte";
            return std::nullopt;
        }
    }
    auto env = build_environment(command, error);
    if (!env) return std::nullopt;

    Spawned out;
    UniqueFd child_stdin, child_stdout, child_stderr;
    if (!make_pipe(child_stdin, out.stdin_write) || !make_pipe(out.stdout_read, child_stdout) ||
        !make_pipe(out.stderr_read, child_stderr)) {
        error = "could not create pipes: " + errno_text(errno);
        return std::nullopt;
    }

    std::vector<char *> argv;
    for (const std::string &arg : command.argv)
        argv.push_back(const_cast<char *>(arg.c_str()));
    argv.push_back(nullptr);
    std::vector<char *> envp;
    for (std::string &var : *env)
        envp.push_back(var.data());
    envp.push_back(nullptr);

    SpawnSetup setup;
    int rc = prepare(setup, command, child_stdin, child_stdout, child_stderr);
    // glibc's posix_spawn waits for the exec and reports its failure (a missing
    // program, no execute permission, a bad working directory) as the return value.
    if (rc == 0)
        rc = ::posix_spawn(&out.pid, argv[0], setup.actions(), setup.attr(), argv.data(),
                           envp.data());
    if (rc != 0) {
        error = errno_text(rc);
        if (!command.working_directory.empty() && (rc == ENOENT || rc == EACCES || rc == ENOTDIR)) {
            error += " (the program, or the working directory)";
        }
        return std::nullopt;
    }

    // Our ends must not wait; the child's ends (closed here) stay blocking, as programs
    // expect of their standard streams.
    if (!set_non_blocking(out.stdin_write.get()) || !set_non_blocking(out.stdout_read.get()) ||
        !set_non_blocking(out.stderr_read.get())) {
        int err = errno;
        ::kill(-out.pid, SIGKILL);
        while (::waitpid(out.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        error = "could not set up its pipes: " + errno_text(err);
        return std::nullopt;
    }
    return out;
}

// Writing to a pipe whose reader is gone raises SIGPIPE, whose default action ends
// the whole process, and a library may not change the process's disposition. Instead
// the signal is blocked for this thread during the write; if the write fails with
// EPIPE, the signal it raised (directed at this thread) is taken off the pending set
// with a zero-timeout sigtimedwait before the old mask is restored. A SIGPIPE that
// was already pending before the write is left alone.
ssize_t write_without_sigpipe(int fd, const char *data, std::size_t size, int &err) {
    sigset_t pipe_only, old_mask;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old_mask);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    const bool already_pending = sigismember(&pending, SIGPIPE) == 1;

    ssize_t n = ::write(fd, data, size);
    err = n < 0 ? errno : 0;

    if (n < 0 && err == EPIPE && !already_pending) {
        const timespec no_wait{};
        while (::sigtimedwait(&pipe_only, nullptr, &no_wait) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return n;
}

// Appends to text that may hold secrets. A std::string that grows frees its old block
// unscrubbed, so growth is done here: double, copy, scrub the old block.
void append_scrubbed(std::string &out, std::string_view bytes) {
    if (out.size() + bytes.size() > out.capacity()) {
        std::string bigger;
        bigger.reserve(std::max({out.capacity() * 2, out.size() + bytes.size(), kReadChunk}));
        bigger.append(out);
        cleanse(out.data(), out.capacity());
        out.swap(bigger);
    }
    out.append(bytes);
}

struct Redaction {
    SecretBytes value;
    std::string marker;
};

class ExecRun : public std::enable_shared_from_this<ExecRun> {
  public:
    ExecRun(asio::io_context &io, ExecCommand command, ScrubbedString input,
            std::vector<SecretBytes> redact, std::function<void(std::string)> on_stderr_line,
            std::function<void(ExecResult)> done)
        : strand_(asio::make_strand(io)),
          command_(std::move(command)),
          input_(std::move(input)),
          on_stderr_line_(std::move(on_stderr_line)),
          done_(std::move(done)),
          // Every I/O object runs its handlers on the strand: a run's handlers never
          // overlap, whichever threads run the io_context.
          stdin_(strand_),
          stdout_(strand_),
          stderr_(strand_),
          pidfd_(strand_),
          timeout_timer_(strand_),
          poll_timer_(strand_) {
        for (SecretBytes &value : redact) {
            if (value.size() < kMinRedacted) continue;
            std::string marker = "[secret " + value.fingerprint() + "]";
            redactions_.push_back({std::move(value), std::move(marker)});
        }
        // Longest first, so that a value containing another is replaced whole.
        std::sort(
            redactions_.begin(), redactions_.end(),
            [](const Redaction &a, const Redaction &b) { return a.value.size() > b.value.size(); });
        // A line keeps enough bytes past the cut to recognise a value that starts
        // before the cut, so a cut never leaves part of a secret behind.
        std::size_t longest = redactions_.empty() ? 0 : redactions_.front().value.size();
        line_keep_ = kExecStderrLineBytes + longest;
        stderr_line_.reserve(line_keep_);
    }

    ExecRun(const ExecRun &) = delete;
    ExecRun &operator=(const ExecRun &) = delete;

    ~ExecRun() {
        if (pid_ > 0 && !reaped_) {
            // The io_context went away mid-run and took the handlers with it. The group
            // has just been sent SIGKILL, so this wait is short.
            ::kill(-pid_, SIGKILL);
            while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
            }
        }
        cleanse(stdout_buffer_.data(), stdout_buffer_.size());
        cleanse(stderr_buffer_.data(), stderr_buffer_.size());
        cleanse(stderr_line_.data(), stderr_line_.capacity());
    }

    void post_start() {
        asio::post(strand_, [self = shared_from_this()] { self->start(); });
    }

  private:
    void start() {
        std::string error;
        auto spawned = spawn(command_, error);
        if (!spawned) {
            result_.end = End::spawn_failed;
            result_.error = std::move(error);
            deliver();
            return;
        }
        pid_ = spawned->pid;
        if (!adopt(stdin_, spawned->stdin_write) || !adopt(stdout_, spawned->stdout_read) ||
            !adopt(stderr_, spawned->stderr_read)) {
            // Registration with the reactor failed (out of memory): nothing could watch
            // the program, so it is stopped at once. SIGKILL makes this wait short.
            ::kill(-pid_, SIGKILL);
            while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
            }
            reaped_ = true;
            result_.end = End::spawn_failed;
            result_.error = "could not watch its pipes";
            deliver();
            return;
        }

        timeout_timer_.expires_after(command_.timeout);
        timeout_timer_.async_wait([self = shared_from_this()](const boost::system::error_code &ec) {
            self->on_timeout(ec);
        });

        // pidfd_open cannot race with pid reuse here: the child is ours and is not
        // reaped until the run ends.
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
        if (pidfd >= 0) {
            boost::system::error_code ec;
            pidfd_.assign(pidfd, ec);
            if (ec) ::close(pidfd);
        }
        wait_for_exit();

        if (input_.str().empty()) {
            close_stdin();
        } else {
            wait_stdin_writable();
        }
        read_stdout();
        read_stderr();
    }

    static bool adopt(asio::posix::stream_descriptor &descriptor, UniqueFd &fd) {
        boost::system::error_code ec;
        descriptor.assign(fd.get(), ec);
        if (ec) return false;
        fd.release();
        return true;
    }

    // ---- stdin

    void wait_stdin_writable() {
        stdin_.async_wait(asio::posix::stream_descriptor::wait_write,
                          [self = shared_from_this()](const boost::system::error_code &ec) {
                              self->on_stdin_writable(ec);
                          });
    }

    void on_stdin_writable(const boost::system::error_code &ec) {
        if (!stdin_.is_open()) return;  // closed: the run moved on
        if (ec) {
            close_stdin();
            return;
        }
        const std::string &input = input_.str();
        while (input_written_ < input.size()) {
            int err = 0;
            std::size_t chunk = std::min(kWriteChunk, input.size() - input_written_);
            ssize_t n = write_without_sigpipe(stdin_.native_handle(), input.data() + input_written_,
                                              chunk, err);
            if (n > 0) {
                input_written_ += static_cast<std::size_t>(n);
            } else if (err == EINTR) {
                continue;
            } else if (err == EAGAIN || err == EWOULDBLOCK) {
                wait_stdin_writable();
                return;
            } else {
                // EPIPE: the program closed its stdin, or exited, without reading it
                // all. That is its choice; its exit status tells whether it worked.
                break;
            }
        }
        close_stdin();
    }

    void close_stdin() {
        boost::system::error_code ignored;
        stdin_.close(ignored);
    }

    // ---- stdout

    void read_stdout() {
        stdout_.async_read_some(
            asio::buffer(stdout_buffer_),
            [self = shared_from_this()](const boost::system::error_code &ec, std::size_t n) {
                self->on_stdout(ec, n);
            });
    }

    void on_stdout(const boost::system::error_code &ec, std::size_t n) {
        if (!stdout_.is_open()) return;  // closed after a kill: the rest is not wanted
        if (n > 0) {
            std::string &output = result_.output.str();
            if (n > command_.max_output - output.size()) {
                cleanse(stdout_buffer_.data(), n);
                kill_group(End::output_too_large);
                return;
            }
            append_scrubbed(output, {stdout_buffer_.data(), n});
            cleanse(stdout_buffer_.data(), n);
        }
        if (ec) {
            // End of file, or a read error that ends the output just the same.
            close_stdout();
            maybe_finish();
            return;
        }
        read_stdout();
    }

    void close_stdout() {
        boost::system::error_code ignored;
        stdout_.close(ignored);
    }

    // ---- stderr

    void read_stderr() {
        stderr_.async_read_some(
            asio::buffer(stderr_buffer_),
            [self = shared_from_this()](const boost::system::error_code &ec, std::size_t n) {
                self->on_stderr(ec, n);
            });
    }

    void on_stderr(const boost::system::error_code &ec, std::size_t n) {
        if (!stderr_.is_open()) return;
        for (std::size_t i = 0; i < n; ++i) {
            char c = stderr_buffer_[i];
            if (c == '\n') {
                emit_stderr_line();
            } else if (stderr_line_.size() < line_keep_) {
                stderr_line_ += c;  // never grows: reserved to line_keep_
            } else {
                stderr_line_cut_ = true;
            }
        }
        cleanse(stderr_buffer_.data(), n);
        if (ec) {
            close_stderr();
            maybe_finish();
            return;
        }
        read_stderr();
    }

    void close_stderr() {
        if (!stderr_line_.empty() || stderr_line_cut_) emit_stderr_line();
        boost::system::error_code ignored;
        stderr_.close(ignored);
    }

    void emit_stderr_line() {
        std::string line = redacted_line();
        cleanse(stderr_line_.data(), stderr_line_.size());
        stderr_line_.clear();
        stderr_line_cut_ = false;

        if (stderr_lines_ >= kExecStderrLines || stderr_bytes_ >= kExecStderrBytes) {
            if (!stderr_truncated_) {
                stderr_truncated_ = true;
                if (on_stderr_line_) on_stderr_line_("[stderr truncated]");
            }
            return;
        }
        ++stderr_lines_;
        stderr_bytes_ += line.size();
        if (on_stderr_line_) on_stderr_line_(std::move(line));
    }

    // The pending line as it may be shown: values replaced by their markers, control
    // characters escaped (a hook must not be able to forge log lines or move a
    // terminal's cursor), cut at kExecStderrLineBytes of the original.
    std::string redacted_line() const {
        std::string_view raw = stderr_line_;
        bool cut = stderr_line_cut_ || raw.size() > kExecStderrLineBytes;
        if (!cut && !raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
        const std::size_t shown = std::min(raw.size(), kExecStderrLineBytes);

        static constexpr char hex[] = "0123456789abcdef";
        std::string out;
        out.reserve(shown + 32);
        std::size_t i = 0;
        while (i < shown) {
            const Redaction *match = nullptr;
            for (const Redaction &r : redactions_) {
                if (raw.substr(i, r.value.size()) == r.value.reveal()) {
                    match = &r;
                    break;
                }
            }
            if (match) {
                out += match->marker;
                i += match->value.size();
                continue;
            }
            auto c = static_cast<unsigned char>(raw[i]);
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                out += "\\x";
                out += hex[c >> 4];
                out += hex[c & 0xf];
            } else {
                out += static_cast<char>(c);
            }
            ++i;
        }
        if (cut) out += " [line truncated]";
        return out;
    }

    // ---- exit, timeout, kill

    void wait_for_exit() {
        auto handler = [self = shared_from_this()](const boost::system::error_code &ec) {
            self->on_exit_signal(ec);
        };
        if (pidfd_.is_open()) {
            pidfd_.async_wait(asio::posix::stream_descriptor::wait_read, std::move(handler));
        } else {
            poll_timer_.expires_after(kExitPollInterval);
            poll_timer_.async_wait(std::move(handler));
        }
    }

    void on_exit_signal(const boost::system::error_code &ec) {
        if (finished_ || exited_) return;
        if (ec == asio::error::operation_aborted) return;
        if (ec && pidfd_.is_open()) {
            // The pidfd cannot be watched after all; poll instead.
            boost::system::error_code ignored;
            pidfd_.close(ignored);
        }
        if (!check_exit()) {
            wait_for_exit();
            return;
        }
        maybe_finish();
    }

    // Notes the program's end without reaping it (WNOWAIT): until the run ends its
    // pid, and so its process group id, cannot be given to another process, and a
    // kill of the group can only reach what the program left behind.
    bool check_exit() {
        siginfo_t info;
        std::memset(&info, 0, sizeof info);
        int rc;
        do {
            rc = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
        } while (rc < 0 && errno == EINTR);
        if (rc < 0) {
            // ECHILD: another part of the application reaped it (a waitpid(-1) loop, or
            // SIGCHLD set to SIG_IGN). Its status is lost.
            exited_ = true;
            reaped_ = true;
            result_.error = "its exit status was collected elsewhere in the application";
            close_stdin();
            return true;
        }
        if (info.si_pid == 0) return false;

        exited_ = true;
        if (info.si_code == CLD_EXITED) {
            exit_code_ = info.si_status;
        } else {
            signal_ = info.si_status;
        }
        // Whatever input is left has no reader worth waiting for.
        close_stdin();
        return true;
    }

    void on_timeout(const boost::system::error_code &ec) {
        if (ec || finished_) return;
        kill_group(End::timed_out);
    }

    // Kills the program and everything in its group, and stops reading: the result is
    // decided. A child that left the group (setsid) keeps running but is no longer
    // listened to, so it cannot hold the run open.
    void kill_group(End reason) {
        if (finished_ || killed_for_) return;
        killed_for_ = reason;
        if (!reaped_) ::kill(-pid_, SIGKILL);
        close_stdin();
        close_stdout();
        close_stderr();
        maybe_finish();
    }

    // ---- the end

    void maybe_finish() {
        if (finished_ || !exited_ || stdout_.is_open() || stderr_.is_open()) return;

        boost::system::error_code ignored;
        timeout_timer_.cancel();
        poll_timer_.cancel();
        pidfd_.close(ignored);
        close_stdin();
        if (!reaped_) {
            // A zombie since check_exit(): this returns at once.
            while (::waitpid(pid_, nullptr, WNOHANG) < 0 && errno == EINTR) {
            }
            reaped_ = true;
        }

        if (killed_for_) {
            result_.end = *killed_for_;
        } else if (signal_ != 0) {
            result_.end = End::signalled;
            result_.signal = signal_;
        } else {
            result_.end = End::exited;
        }
        result_.exit_code = exit_code_;
        if (result_.end == End::signalled || result_.end == End::timed_out ||
            result_.end == End::output_too_large) {
            result_.signal = signal_;
        }
        deliver();
    }

    void deliver() {
        finished_ = true;
        on_stderr_line_ = nullptr;
        auto done = std::move(done_);
        for (Redaction &r : redactions_)
            r.value.clear();
        cleanse(input_.str());
        if (done) done(std::move(result_));
    }

    Strand strand_;
    ExecCommand command_;
    ScrubbedString input_;
    std::size_t input_written_ = 0;
    std::vector<Redaction> redactions_;
    std::function<void(std::string)> on_stderr_line_;
    std::function<void(ExecResult)> done_;

    asio::posix::stream_descriptor stdin_;
    asio::posix::stream_descriptor stdout_;
    asio::posix::stream_descriptor stderr_;
    asio::posix::stream_descriptor pidfd_;
    asio::steady_timer timeout_timer_;
    asio::steady_timer poll_timer_;

    std::array<char, kReadChunk> stdout_buffer_{};
    std::array<char, kReadChunk> stderr_buffer_{};
    std::string stderr_line_;
    std::size_t line_keep_ = 0;
    bool stderr_line_cut_ = false;
    std::size_t stderr_lines_ = 0;
    std::size_t stderr_bytes_ = 0;
    bool stderr_truncated_ = false;

    pid_t pid_ = -1;
    bool exited_ = false;
    bool reaped_ = false;
    bool finished_ = false;
    int exit_code_ = -1;
    int signal_ = 0;
    std::optional<End> killed_for_;
    ExecResult result_;
};

std::string seconds_text(Duration d) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.3gs", to_seconds(d));
    return buffer;
}

}  // namespace

const char *exec_end_name(ExecResult::End end) noexcept {
    switch (end) {
        case End::exited:
            return "exited";
        case End::signalled:
            return "signalled";
        case End::timed_out:
            return "timed_out";
        case End::output_too_large:
            return "output_too_large";
        case End::spawn_failed:
            return "spawn_failed";
    }
    return "unknown";
}

void run_exec(asio::io_context &io, ExecCommand command, ScrubbedString input,
              std::vector<SecretBytes> redact, std::function<void(std::string line)> on_stderr_line,
              std::function<void(ExecResult result)> done) {
    auto run =
        std::make_shared<ExecRun>(io, std::move(command), std::move(input), std::move(redact),
                                  std::move(on_stderr_line), std::move(done));
    run->post_start();
}

std::string describe_exec_failure(const ExecCommand &command, std::string_view step,
                                  const ExecResult &result) {
    std::string out = "exec hook ";
    append_json_string(out, command.argv.empty() ? std::string_view() : command.argv[0]);
    out += " (step ";
    append_json_string(out, step);
    out += "): ";
    switch (result.end) {
        case End::exited:
            if (result.exit_code < 0) {
                out += "exited, but " + result.error;
            } else {
                out += "exited with status " + std::to_string(result.exit_code);
            }
            break;
        case End::signalled: {
            out += "was killed by signal " + std::to_string(result.signal);
            if (const char *name = sigabbrev_np(result.signal)) {
                out += " (SIG";
                out += name;
                out += ')';
            }
            break;
        }
        case End::timed_out:
            out += "timed out after " + seconds_text(command.timeout) + " (process group killed)";
            break;
        case End::output_too_large:
            out += "wrote more than " + std::to_string(command.max_output) +
                   " bytes to stdout (process group killed)";
            break;
        case End::spawn_failed:
            out += "could not be started: " + result.error;
            break;
    }
    return out;
}

}  // namespace keyturn
