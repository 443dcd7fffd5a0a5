#include "core/exec_provider.hpp"

#include <utility>
#include <vector>

#include "core/hook_provider.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace {

constexpr std::string_view kStep = "refresh";

// `exec hook "<argv0>" (step "refresh")`, the start of every message about a run.
std::string hook_label(const ExecCommand &command) {
    std::string out = "exec hook ";
    append_json_string(out, command.argv.empty() ? std::string_view() : command.argv[0]);
    out += " (step ";
    append_json_string(out, kStep);
    out += ')';
    return out;
}

RefreshOutcome outcome_of(const ExecCommand &command, ExecResult &result) {
    if (result.end != ExecResult::End::exited || result.exit_code != 0) {
        return RefreshFailure{describe_exec_failure(command, kStep, result), FailureAction::retry,
                              std::nullopt};
    }
    try {
        return parse_hook_result(result.output.str());
    } catch (const Error &e) {
        // parse_hook_result names what is wrong and never quotes a value.
        return RefreshFailure{
            hook_label(command) + ": exited 0 but did not write a valid result: " + e.what(),
            FailureAction::retry, std::nullopt};
    }
}

}  // namespace

ExecProvider::ExecProvider(boost::asio::io_context &io, ExecCommand command, LogFunction log)
    : io_(io), command_(std::move(command)), log_(std::move(log)) {}

void ExecProvider::refresh(const RefreshRequest &request, Completion completion) {
    ScrubbedString input;
    write_hook_request(input, request, kStep);

    // The request's pointers are valid only during this call: keep copies to redact.
    std::vector<SecretBytes> redact;
    if (request.current != nullptr) redact.push_back(request.current->value);
    if (request.refresh != nullptr) redact.push_back(*request.refresh);

    std::function<void(std::string)> on_line;
    if (log_) {
        std::string prefix = "credential ";
        append_json_string(prefix, request.credential);
        prefix += ": " + hook_label(command_) + ": ";
        on_line = [log = log_, prefix = std::move(prefix)](std::string line) {
            log(LogLevel::warning, prefix + line);
        };
    }

    run_exec(io_, command_, std::move(input), std::move(redact), std::move(on_line),
             [command = command_, completion](ExecResult result) {
                 (void)completion.complete(outcome_of(command, result));
             });
}

}  // namespace keyturn
