#pragma once
// The engine: a registry of credentials, one deadline queue and one timer for all of
// them, worker threads on an Asio io_context, and the events that tell the world
// what happened. Every public member is safe to call from any thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/events.hpp"
#include "core/provider.hpp"
#include "core/spec.hpp"

namespace keyturn {

class EngineCore;

// One credential as readers see it. Handles (shared pointers to it) stay valid
// after the credential is removed or the engine is gone; reads then fail with
// Status::removed.
class Credential {
  public:
    Credential(std::string id, bool serve_stale, std::shared_ptr<const Clock> clock);
    ~Credential();
    Credential(const Credential &) = delete;
    Credential &operator=(const Credential &) = delete;

    const std::string &id() const noexcept { return id_; }

    // The hot path: copies the current value into `buf` without locking or
    // allocating. `*out_len` receives the value's size whenever a value is
    // available (also when `cap` is too small); `*stale` whether it has expired and
    // is served only because the credential serves stale values.
    Status read(char *buf, std::size_t cap, std::size_t *out_len, bool *stale) const noexcept;

  private:
    friend class EngineCore;
    friend struct CredentialBlock;
    struct State;

    const std::string id_;
    const bool serve_stale_;
    const std::shared_ptr<const Clock> clock_;
    std::atomic<const Snapshot *> current_{nullptr};
    std::atomic<bool> removed_{false};
    // The engine's bookkeeping, touched only under the engine's mutex. It lives in the
    // same allocation as the credential (see engine.cpp), which owns both.
    State *state_ = nullptr;
};

using Subscriber = std::function<void(const Event &)>;
using Logger = std::function<void(LogLevel, const std::string &)>;

class Engine {
  public:
    // With a manual clock the engine starts no threads and arms no timer: a test
    // drives it with poll(). `settings.threads` is ignored then.
    explicit Engine(EngineSettings settings, std::shared_ptr<const Clock> clock = nullptr);
    // Stops (draining as configured) and releases everything.
    ~Engine();
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    // Makes `provider` available to credential specs as {"type": "hook", "name": name}.
    // Throws Error(exists).
    void add_provider(const std::string &name, std::shared_ptr<Provider> provider);

    // Adds a credential; loads its stored value. Throws Error(exists | not_found |
    // store).
    void add(CredentialSpec spec);
    // Throws Error(not_found).
    void remove(std::string_view id);
    // Throws Error(not_found | state).
    void refresh_now(std::string_view id);

    // Throws Error(not_found) when a credential names a provider that does not exist.
    void start();
    // Waits up to `drain` (default: the configured drain timeout) for refreshes in
    // flight, then stops the threads. Idempotent. Throws Error(state) when called
    // from one of the engine's own threads.
    void stop(std::optional<Duration> drain = std::nullopt);

    // Manual clock only: runs what is due at the clock's time and every handler that
    // is ready, on the calling thread. Returns the number of handlers run.
    std::size_t poll();

    // Throws Error(not_found).
    std::shared_ptr<const Credential> find(std::string_view id) const;
    // JSON status of one credential, or of all as an array ordered by id.
    std::string status_json(std::string_view id) const;
    std::string status_json() const;
    std::size_t size() const;

    std::uint64_t subscribe(Subscriber subscriber);
    // Throws Error(not_found).
    void unsubscribe(std::uint64_t id);
    // Replaces the logger; an empty function turns logging off.
    void set_logger(LogLevel min_level, Logger logger);

    // True on a worker thread or while a subscriber or the logger is being called.
    bool on_engine_thread() const;

    // Reserves room for `count` credentials, for bulk registration.
    void reserve(std::size_t count);

    // --- secrets that keyturn rotates (see rotator.hpp) ------------------------

    // Adds a secret; loads its store, or seeds it from its seed file. Throws
    // Error(invalid_argument | exists | store | not_found).
    void add_secret(SecretSpec spec);
    // Throws Error(not_found).
    void remove_secret(std::string_view id);
    // Starts (or joins) a rotation; returns its version id. Throws
    // Error(not_found | state | store).
    std::string rotate_now(std::string_view id);
    // Sets the first CURRENT value of a secret that has none. Throws
    // Error(not_found | state | store).
    void seed_secret(std::string_view id, SecretBytes value);
    // A copy of the value labelled CURRENT, PREVIOUS or PENDING, and its version id.
    // Throws Error(not_found | invalid_argument | not_ready).
    SecretBytes read_secret(std::string_view id, std::string_view label,
                            std::string *version = nullptr) const;
    std::string secret_status_json(std::string_view id) const;
    std::string secret_status_json() const;
    std::vector<std::string> secret_ids() const;
    std::vector<std::string> credential_ids() const;

  private:
    std::shared_ptr<EngineCore> core_;
};

}  // namespace keyturn
