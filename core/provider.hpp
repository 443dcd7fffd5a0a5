#pragma once
// How a credential is refreshed. A provider is handed a request and a completion;
// it answers through the completion once — before refresh() returns, or later from
// any thread. A provider that never answers is timed out by the engine.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/snapshot.hpp"
#include "core/status.hpp"

namespace keyturn {

struct RefreshRequest {
    std::string_view credential;
    // "initial", "scheduled", "retry", "manual" or "login".
    std::string_view reason;
    int attempt = 1;
    // The value now held, or null. Valid during refresh() only.
    const Snapshot *current = nullptr;
    // Refresh material to use, or null (none, or discarded for a new login).
    const SecretBytes *refresh = nullptr;
    const Metadata *metadata = nullptr;
};

struct RefreshSuccess {
    SecretBytes value;
    // New refresh material; nothing keeps the old.
    std::optional<SecretBytes> refresh = std::nullopt;
    // Exactly one of the two is set by a well-formed result.
    std::optional<TimePoint> expires_at;
    std::optional<Duration> expires_in;
    bool renewable = false;
    std::optional<Duration> max_lifetime;
    Metadata metadata;
};

enum class FailureAction { retry, login, give_up };
const char *failure_action_name(FailureAction action) noexcept;

struct RefreshFailure {
    std::string reason;
    FailureAction action = FailureAction::retry;
    std::optional<Duration> retry_after;
    // New refresh material that came with an answer unfit to publish (its token had
    // already expired): kept in place of the old one, which the issuer may have
    // rotated away.
    std::optional<SecretBytes> refresh = std::nullopt;
};

using RefreshOutcome = std::variant<RefreshSuccess, RefreshFailure>;

// The answer to one step of a rotation: the new value for create, nothing for the
// other steps; or why the step failed.
struct StepSuccess {
    std::optional<SecretBytes> value;
};
struct StepFailure {
    std::string reason;
    std::optional<Duration> retry_after;
};
using StepOutcome = std::variant<StepSuccess, StepFailure>;

// What a completion token answers: a refresh, or a step of a rotation.
enum class CompletionKind { refresh, step };

// The other end of a completion: the engine. Outcomes arrive here.
class CompletionTarget {
  public:
    virtual ~CompletionTarget() = default;
    virtual Status on_outcome(std::uint32_t slot, std::uint64_t token,
                              RefreshOutcome &&outcome) = 0;
    virtual Status on_step_outcome(std::uint32_t slot, std::uint64_t token,
                                   StepOutcome &&outcome) = 0;
};

// A ticket for one outstanding request. Cheap to copy; completing it twice, late, or
// after the engine is gone is harmless and returns Status::stale_completion.
class Completion {
  public:
    explicit Completion(std::uint64_t token) : token_(token) {}
    std::uint64_t token() const noexcept { return token_; }
    Status complete(RefreshOutcome &&outcome) const;

  private:
    std::uint64_t token_;
};

// What a provider is told when its credential goes away: removed, or the engine
// stopping. Valid during release() only.
struct ReleaseRequest {
    std::string_view credential;
    // "removed" or "stopping".
    std::string_view reason;
    // The value last published, or null.
    const Snapshot *current = nullptr;
    // Work started by release() should end by then: the engine stops waiting.
    std::chrono::steady_clock::time_point deadline;
};

class Provider {
  public:
    virtual ~Provider() = default;
    virtual void refresh(const RefreshRequest &request, Completion completion) = 0;

    // True when release() has something to give back (a lease or a token to revoke).
    // The engine asks before it calls release(), so that credentials whose provider
    // holds nothing cost nothing when the engine stops.
    virtual bool wants_release() const { return false; }
    // Gives back what the provider holds for this credential. `done` is called exactly
    // once, from any thread, possibly before release() returns; it must not throw.
    virtual void release(const ReleaseRequest &request, std::function<void()> done) {
        (void)request;
        done();
    }
};

// The process-wide table of outstanding completions. Tokens are never reused.
namespace completions {

std::uint64_t open(std::weak_ptr<CompletionTarget> target, std::uint32_t slot,
                   CompletionKind kind = CompletionKind::refresh);
// The kind of an outstanding token, or nothing when it is not outstanding.
std::optional<CompletionKind> kind_of(std::uint64_t token);
// Withdraws a token (on timeout or removal). True if it was still outstanding; false
// if it had already been claimed by a completion, which will finish the refresh.
bool withdraw(std::uint64_t token);
// Claims the token and delivers the outcome to its target. A token of the other
// kind is left outstanding and the call fails with Status::invalid_argument.
Status complete(std::uint64_t token, RefreshOutcome &&outcome);
Status complete(std::uint64_t token, StepOutcome &&outcome);

}  // namespace completions

}  // namespace keyturn
