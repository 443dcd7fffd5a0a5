#pragma once
// The exec provider: refreshes a credential by running a program (see exec_runner.hpp
// for how it is run). The program reads the request document on stdin — the same one
// callback hooks receive, with "step": "refresh" added — and writes a result document
// on stdout, then exits 0. Any other end fails the refresh, to be retried.

#include <functional>
#include <string>

#include "core/events.hpp"
#include "core/exec_runner.hpp"
#include "core/provider.hpp"

namespace boost::asio {
class io_context;
}

namespace keyturn {

class ExecProvider final : public Provider {
  public:
    // Receives the lines the program writes to stderr (at warning level, with the
    // credential's current value and refresh material redacted). Called on a thread
    // of the io_context; must not throw.
    using LogFunction = std::function<void(LogLevel level, std::string line)>;

    // `io` runs the program's I/O and must outlive every refresh started here.
    // `command.timeout` should be the engine's hook timeout for the credential.
    ExecProvider(boost::asio::io_context &io, ExecCommand command, LogFunction log);

    // Starts the program and returns; the completion is called exactly once, on a
    // thread of `io`, with:
    // - the result document's outcome (success or reported failure) when the program
    //   exits 0 and its output is a valid result;
    // - RefreshFailure (retry) naming the hook, the step and what was wrong when it
    //   exits 0 with anything else (the reason never quotes the output);
    // - RefreshFailure (retry) from describe_exec_failure() for a non-zero status, a
    //   signal, the timeout, too much output, or a program that cannot be started.
    void refresh(const RefreshRequest &request, Completion completion) override;

  private:
    boost::asio::io_context &io_;
    ExecCommand command_;
    LogFunction log_;
};

}  // namespace keyturn
