#pragma once
// Runs the rotations of an engine's secrets: schedules them, calls each step's hook
// (a callback or an exec program), journals every transition in the secret's store
// before the next step runs, retries with backoff, abandons a version id after too
// many failures and starts over with a new one. The state transitions themselves
// are the pure functions of rotation.hpp.
//
// It shares the engine's io_context, clock and event delivery; it has its own
// mutex, deadline queue and timer. Every public member is safe from any thread.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/events.hpp"
#include "core/hook_provider.hpp"
#include "core/provider.hpp"
#include "core/spec.hpp"

namespace boost::asio {
class io_context;
}

namespace keyturn {

class Rotator final : public CompletionTarget, public std::enable_shared_from_this<Rotator> {
  public:
    struct Services {
        boost::asio::io_context *io = nullptr;
        std::shared_ptr<const Clock> clock;
        Duration hook_timeout = std::chrono::seconds(30);
        // Finds a callback hook by name; throws Error(not_found).
        std::function<HookProvider::Function(const std::string &name)> find_hook;
        // Hands events and log lines to the engine's delivery.
        std::function<void(std::vector<Event>)> emit;
        std::function<void(LogLevel, std::string)> log;
    };

    explicit Rotator(Services services);
    ~Rotator() override;

    // Adds a secret and loads its store; seeds it from spec.seed_file when the store
    // holds no value. Throws Error(invalid_argument | exists | store | not_found).
    void add(SecretSpec spec);
    // Forgets the secret (its store is left as it is). Throws Error(not_found).
    void remove(std::string_view id);
    // Starts a rotation now and returns its version id; a rotation already in flight
    // is joined (its id is returned and a pending retry runs now). Throws
    // Error(not_found | state | store).
    std::string rotate_now(std::string_view id);
    // Gives a secret without a value its first CURRENT value. Throws
    // Error(not_found | state | store).
    void seed(std::string_view id, SecretBytes value);
    // A copy of the value labelled "CURRENT", "PREVIOUS" or "PENDING" (any case).
    // Throws Error(not_found | invalid_argument | not_ready).
    SecretBytes read(std::string_view id, std::string_view label) const;
    // The version id labelled so, or empty. Same errors as read().
    std::string version_of(std::string_view id, std::string_view label) const;

    std::string status_json(std::string_view id) const;
    std::string status_json() const;
    std::size_t size() const;
    std::vector<std::string> ids() const;

    // Resolves every callback hook (throws Error(not_found), starting nothing) and
    // schedules every secret; a rotation found in flight resumes at once.
    void start();
    // No step starts after this; steps in flight may still complete and are
    // journaled.
    void begin_stop();
    // Waits until no step is in flight or the deadline passes; returns how many are
    // still in flight.
    std::size_t wait_drained(std::chrono::steady_clock::time_point deadline);
    void end_stop();

    // Runs what is due at the clock's time (the timer's handler; poll() in tests).
    void process_due();

    Status on_outcome(std::uint32_t, std::uint64_t, RefreshOutcome &&) override {
        return Status::stale_completion;
    }
    Status on_step_outcome(std::uint32_t slot, std::uint64_t token, StepOutcome &&outcome) override;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace keyturn
