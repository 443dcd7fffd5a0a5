#pragma once
// The documents a rotation step hook receives and answers with (keyturn.h describes
// them). Callback hooks and exec programs share them.

#include <optional>
#include <string_view>

#include "core/provider.hpp"
#include "core/rotation.hpp"
#include "core/secret.hpp"
#include "core/snapshot.hpp"

namespace keyturn {

struct StepRequest {
    std::string_view secret;
    RotationStep step;
    // The version id of the rotation in flight.
    std::string_view version;
    // 1 + failures of this rotation so far.
    int attempt = 1;
    // CURRENT, PREVIOUS, PENDING and abandoned values are taken from here.
    const SecretState *state = nullptr;
    const Metadata *metadata = nullptr;
};

// Writes the request document into `out`.
void write_step_request(ScrubbedString &out, const StepRequest &request);

// Reads a step's result document. Throws Error(config) naming the field that is
// wrong; the message never quotes a value. Knowing the step, a create result must
// bring a value and the others must not; without it (a completion through the C
// ABI, which does not know its step) the value is optional and the rotator checks.
StepOutcome parse_step_result(std::string_view json_text, std::optional<RotationStep> step);

}  // namespace keyturn
