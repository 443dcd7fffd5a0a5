#pragma once
// Runs a hook program ("exec hook") without blocking the engine's threads.
//
// What the program sees:
// - It is started directly with posix_spawn, never through a shell; argv[0] is the
//   program's path and is not looked up in PATH (a relative path is taken from the
//   working directory the program starts in).
// - Secrets reach it on stdin only, and it answers on stdout. Nothing secret is put in
//   its arguments or its environment.
// - Its environment is built from scratch, not inherited: PATH, HOME, LANG, LC_ALL, TZ
//   and TMPDIR are copied from this process when they are set (PATH defaults to
//   /usr/local/bin:/usr/bin:/bin), then the command's own `env` is added (a name given
//   there replaces the copied one). Everything else this process holds in its
//   environment — including any credential the application keeps there — stays here.
// - File descriptors 0, 1 and 2 are pipes to this process; every other descriptor is
//   closed in the program. Signal dispositions are reset to their defaults and its
//   signal mask is empty, whatever the application set for itself.
// - It leads a new process group. On timeout, or when stdout grows past the cap, the
//   whole group is killed with SIGKILL, so that children it started die with it.
//
// Requires Linux and glibc 2.34 or later.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "core/secret.hpp"

namespace boost::asio {
class io_context;
}

namespace keyturn {

struct ExecCommand {
    // argv[0] is the program's path; the rest are its arguments. Never put a secret here:
    // arguments are visible to every user of the machine (ps, /proc/<pid>/cmdline).
    std::vector<std::string> argv;
    // For the whole run: from the start until the program has exited and closed its
    // output. On expiry the process group is killed.
    Duration timeout = std::chrono::seconds(30);
    // Most bytes read from stdout. One more and the process group is killed.
    std::size_t max_output = std::size_t{1} << 20;
    // Variables added to the minimal environment. Not for secrets.
    std::vector<std::pair<std::string, std::string>> env;
    // Where the program starts; empty to start where this process is.
    std::string working_directory;
};

struct ExecResult {
    enum class End {
        exited,            // exit_code holds its status (0 is success)
        signalled,         // killed by `signal`, not by the runner
        timed_out,         // the runner killed the group at the timeout
        output_too_large,  // the runner killed the group: stdout passed max_output
        spawn_failed,      // it never ran; `error` says why
    };

    End end = End::spawn_failed;
    int exit_code = -1;
    int signal = 0;
    // Everything read from stdout. It may carry secrets.
    ScrubbedString output;
    // For spawn_failed, what failed (such as "No such file or directory"); for an exit
    // whose status could not be collected, why. Never holds a secret.
    std::string error;
};

// "exited", "signalled", "timed_out", "output_too_large" or "spawn_failed".
const char *exec_end_name(ExecResult::End end) noexcept;

// Limits on what a run passes on from stderr: a longer line is cut (and marked), and
// past either total the remaining output is read and dropped, after one last line
// "[stderr truncated]".
inline constexpr std::size_t kExecStderrLineBytes = 4096;
inline constexpr std::size_t kExecStderrLines = 200;
inline constexpr std::size_t kExecStderrBytes = 64 * 1024;

// Starts `command`, writes `input` to its stdin and closes it, collects stdout (up to
// command.max_output bytes) and passes stderr on line by line.
//
// Each stderr line reaches `on_stderr_line` (which may be empty) with every value in
// `redact` that is at least 4 bytes long replaced by "[secret <fingerprint>]", and
// control characters shown as \xNN. A value is recognised only as the exact bytes:
// a hook that prints a secret encoded (base64, JSON-escaped) or split across lines
// is not redacted.
//
// `done` is called exactly once, with the result, after the program has been reaped:
// no zombie is left behind, and none is reaped by anyone else while the run is in
// progress (the program stays unreaped until the end, so its process group id cannot
// be reused before the last kill). `done` is called even when the program cannot be
// started, but never from within run_exec(): like every callback here it runs as a
// handler of `io`, on whichever thread runs it (run() on several threads, or poll()).
// The callbacks of one run never run concurrently with each other; they must not throw.
//
// A program whose output stays open after it exits (a background child holding
// stdout) keeps the run going until the timeout, which then kills the group.
//
// The program exiting without reading all of its input is not an error: the rest of
// the input is dropped and the result is what the program did.
//
// If `io` is destroyed while a run is in progress, the run kills the process group
// and waits for the program to die in its destructor, without calling `done`.
//
// Thread: may be called from any thread, including from within a handler of `io`.
// Ownership: `input` and `redact` are kept until the run ends, then overwritten.
void run_exec(boost::asio::io_context &io, ExecCommand command, ScrubbedString input,
              std::vector<SecretBytes> redact, std::function<void(std::string line)> on_stderr_line,
              std::function<void(ExecResult result)> done);

// The failure text for messages and events: names the hook (argv[0]) and the step, then
// what went wrong, e.g. `exec hook "/usr/bin/rotate" (step "test"): exited with status
// 3`. For a clean exit (status 0) it says so; callers use it for the other outcomes.
std::string describe_exec_failure(const ExecCommand &command, std::string_view step,
                                  const ExecResult &result);

}  // namespace keyturn
