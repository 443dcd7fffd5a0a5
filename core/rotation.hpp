#pragma once
// Rotation of a secret through four steps — create, set, test, finish — as pure
// state transitions. The engine runs the hooks and persists the state; this file
// decides what comes next and what a step's success or failure changes.
//
// A secret has versions labelled CURRENT, PENDING and PREVIOUS. Exactly one version
// is CURRENT once the secret has a value; PENDING exists only while a rotation is in
// flight. A rotation is fixed to one version id from its start: every step receives
// it, and every transition is journaled before the next step runs, so a process that
// dies anywhere resumes at the step that was not yet recorded.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/secret.hpp"

namespace keyturn {

enum class RotationStep { create, set, test, finish };
const char *step_name(RotationStep step) noexcept;
std::optional<RotationStep> step_from_name(std::string_view name) noexcept;

// How far the rotation in flight got: the last transition that was journaled.
enum class RotationStage { started, created, set, tested };
const char *stage_name(RotationStage stage) noexcept;

struct SecretVersion {
    std::string id;
    SecretBytes value;
    TimePoint created_at{};
};

struct RotationInFlight {
    std::string version;
    RotationStage stage = RotationStage::started;
    // "scheduled", "manual" or "restart" (a new round after an abandoned one).
    std::string reason;
    TimePoint started_at{};
    // Failed attempts since this version id started; reaching the limit abandons it.
    int failures = 0;
    // 1 for the first version id of a rotation, +1 for each that was abandoned.
    int round = 1;
    std::string last_error;
};

// One journaled transition, kept for operators (the last kJournalLength).
struct JournalEntry {
    TimePoint time{};
    std::string version;
    // "started", "created", "set", "tested", "finished", "failed", "abandoned",
    // "seeded".
    std::string transition;
    // For failures: the step and the reason. Never a value.
    std::string detail;
};

inline constexpr std::size_t kJournalLength = 32;
// Values of abandoned rotations are kept until the next rotation finishes: a `set`
// step may have applied one in the target system before a later step failed, and
// then it may be the only value that works.
inline constexpr std::size_t kMaxAbandoned = 4;

// Everything a secret's store keeps.
struct SecretState {
    std::optional<SecretVersion> current;
    std::optional<SecretVersion> pending;
    // Versions that were CURRENT before, newest first: past[0] is PREVIOUS.
    std::vector<SecretVersion> past;
    // Newest first.
    std::vector<SecretVersion> abandoned;
    std::optional<RotationInFlight> rotation;
    std::optional<TimePoint> last_rotated;
    std::uint64_t rotations = 0;
    std::deque<JournalEntry> journal;

    const SecretVersion *previous() const { return past.empty() ? nullptr : &past.front(); }
};

// A version id: the UTC start time and 6 random hex digits, "20261203T182301Z-3f9a1c".
std::string make_version_id(TimePoint now, std::uint32_t random);

// Gives the secret its first CURRENT value. Throws Error(state) if it has one.
void seed(SecretState &state, std::string version, SecretBytes value, TimePoint now);

// Starts a rotation with `version`. Throws Error(state) when one is in flight.
void begin_rotation(SecretState &state, std::string version, std::string reason, int round,
                    TimePoint now);

// The step to run next for the rotation in flight, or nothing when none is.
std::optional<RotationStep> next_step(const SecretState &state);

// Records that `step` succeeded. `created` is the value a create step produced; it
// is ignored for the other steps. After finish, versions beyond `keep_past` past
// ones are erased (their bytes are overwritten as they go). Throws Error(state)
// when `step` is not the next step, or create brought no value.
void record_success(SecretState &state, RotationStep step, std::optional<SecretBytes> created,
                    TimePoint now, int keep_past);

enum class AfterFailure { retry, abandoned };

// Records that `step` failed. When the rotation has now failed `max_failures`
// times it is abandoned: PENDING, if any, moves to the abandoned values and no
// rotation is in flight; the caller starts a new round with a new version id.
AfterFailure record_failure(SecretState &state, RotationStep step, const std::string &reason,
                            TimePoint now, int max_failures);

// Finds the value of a version the secret still holds, by id.
const SecretVersion *find_version(const SecretState &state, std::string_view id);

// The store format: JSON text (scrubbed when released) and back. Decoding throws
// Error(store) naming `where` and the field that is wrong.
void encode_secret_state(ScrubbedString &out, const SecretState &state);
SecretState decode_secret_state(std::string_view text, std::string_view where);

}  // namespace keyturn
