#pragma once
// The hook provider: refreshes by calling a function with the request as JSON text
// and a completion token. The C ABI registers callbacks as hooks; exec programs use
// the same request and result documents.

#include <functional>
#include <string_view>

#include "core/provider.hpp"
#include "core/secret.hpp"

namespace keyturn {

class HookProvider final : public Provider {
  public:
    // Returns 0 when it accepted the request; anything else fails the refresh at once
    // unless the function already completed it.
    using Function = std::function<int(std::string_view request_json, std::uint64_t token)>;

    explicit HookProvider(Function function) : function_(std::move(function)) {}
    void refresh(const RefreshRequest &request, Completion completion) override;
    const Function &function() const noexcept { return function_; }

  private:
    Function function_;
};

// Writes the request document described in keyturn.h into `out`. A non-empty `step`
// adds a top-level "step" field naming what the hook is asked to do ("refresh"); exec
// hooks receive it, callback hooks do not.
void write_hook_request(ScrubbedString &out, const RefreshRequest &request,
                        std::string_view step = {});

// Reads a result document (keyturn.h describes it). Throws Error(config) naming the
// field that is wrong; the message never quotes a value.
RefreshOutcome parse_hook_result(std::string_view json_text);

// Appends `text` to `out` as a JSON string literal.
void append_json_string(std::string &out, std::string_view text);

}  // namespace keyturn
