#include "core/engine.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/deadline_queue.hpp"
#include "core/exec_provider.hpp"
#include "core/hazard.hpp"
#include "core/http_providers.hpp"
#include "core/id_index.hpp"
#include "core/json_refresh.hpp"
#include "core/refresh_policy.hpp"
#include "core/rotator.hpp"
#include "core/store.hpp"
#include "core/vault_kv_store.hpp"
#include "core/vault_providers.hpp"

namespace keyturn {

namespace asio = boost::asio;
namespace json = boost::json;

// ---------------------------------------------------------------------------------
// Credential

enum class Phase { idle, in_flight, gave_up };

struct Credential::State {
    // Shared by every credential configured alike (its id is empty; the credential
    // holds the id), so a million identical credentials hold one spec.
    std::shared_ptr<const CredentialSpec> spec;
    std::shared_ptr<Store> store;
    std::shared_ptr<Provider> provider;
    // Keeps *current_ alive for the engine's own use outside its mutex; readers rely
    // on hazard pointers instead.
    std::shared_ptr<const Snapshot> owner;
    DeadlineQueue::Slot slot = 0;

    Phase phase = Phase::idle;
    std::uint64_t token = 0;
    TimePoint in_flight_deadline{};
    TimePoint next_refresh = kNever;
    std::string_view next_reason = "initial";
    // A refresh token from the credential's seed file, used until a first value
    // exists (and kept when that first answer brings none).
    std::shared_ptr<const SecretBytes> seed_refresh;
    int failures = 0;
    bool discard_refresh = false;
    bool announced_expiring = false;
    bool announced_expired = false;
    std::string last_error;
};

// A credential and the engine's state for it, allocated together: one allocation per
// credential instead of two matters at a million of them.
struct CredentialBlock {
    Credential credential;
    Credential::State state;

    CredentialBlock(std::string id, bool serve_stale, std::shared_ptr<const Clock> clock)
        : credential(std::move(id), serve_stale, std::move(clock)) {
        credential.state_ = &state;
    }
};

Credential::Credential(std::string id, bool serve_stale, std::shared_ptr<const Clock> clock)
    : id_(std::move(id)), serve_stale_(serve_stale), clock_(std::move(clock)) {}

Credential::~Credential() = default;

Status Credential::read(char *buf, std::size_t cap, std::size_t *out_len,
                        bool *stale) const noexcept {
    hazard::Guard guard;
    const Snapshot *s = guard.protect(current_);
    if (s == nullptr) {
        return removed_.load(std::memory_order_acquire) ? Status::removed : Status::not_ready;
    }
    const bool expired = !clock_->surely_before(s->expires_at);
    if (expired && !serve_stale_) return Status::expired;

    const std::size_t n = s->value.size();
    *out_len = n;
    if (n > cap) return Status::buffer_too_small;
    if (n != 0) std::memcpy(buf, s->value.data(), n);
    *stale = expired;
    return Status::ok;
}

// ---------------------------------------------------------------------------------
// EngineCore

namespace {

constexpr std::size_t kDueBatch = 2048;

// An exec program gets this much longer from the engine than from its runner, so that
// the runner's timeout, which kills the process group, is the one that reports.
constexpr Duration kExecGrace = std::chrono::seconds(5);

// A refresh about to be handed to its provider, prepared under the mutex and
// started after it is released.
struct Launch {
    std::shared_ptr<Credential> credential;
    std::shared_ptr<Provider> provider;
    std::shared_ptr<const Snapshot> current;
    std::optional<Metadata> merged_metadata;
    std::string_view reason;
    int attempt;
    bool use_refresh;
    std::uint64_t token;
    std::shared_ptr<const SecretBytes> seed_refresh;
};

// Replaces every occurrence of a secret in `text` with its fingerprint.
void scrub(std::string &text, const SecretBytes *secret) {
    if (secret == nullptr || secret->size() < 4) return;
    std::string_view needle = secret->reveal();
    std::string replacement = "[secret " + secret->fingerprint() + "]";
    for (std::size_t at = text.find(needle); at != std::string::npos;
         at = text.find(needle, at + replacement.size())) {
        text.replace(at, needle.size(), replacement);
    }
}

}  // namespace

class EngineCore final : public CompletionTarget, public std::enable_shared_from_this<EngineCore> {
  public:
    EngineCore(EngineSettings settings, std::shared_ptr<const Clock> clock)
        : settings_(settings),
          clock_(clock ? std::move(clock) : std::make_shared<SystemClock>()),
          manual_(clock_->is_manual()),
          timer_(io_),
          rng_(std::random_device{}()) {}

    // The rotator calls back into this object; it is made once this object is owned
    // by a shared_ptr.
    void make_rotator() {
        Rotator::Services services;
        services.io = &io_;
        services.clock = clock_;
        services.hook_timeout = settings_.hook_timeout;
        services.find_hook = [this](const std::string &name) {
            std::lock_guard lock(mutex_);
            auto it = providers_.find(name);
            auto *hook =
                it == providers_.end() ? nullptr : dynamic_cast<HookProvider *>(it->second.get());
            if (hook == nullptr) {
                throw Error(Status::not_found, "no hook named \"" + name + "\" is registered");
            }
            return hook->function();
        };
        services.emit = [this](std::vector<Event> events) { emit(std::move(events)); };
        services.log = [this](LogLevel level, std::string line) { log(level, std::move(line)); };
        rotator_ = std::make_shared<Rotator>(std::move(services));
    }

    Rotator &rotator() { return *rotator_; }
    const Rotator &rotator() const { return *rotator_; }

    ~EngineCore() override {
        rotator_.reset();
        if (http_) http_->shutdown();
        // Handles may outlive the engine; they must see the credential as removed.
        for (auto &c : slots_) {
            if (c == nullptr) continue;
            c->removed_.store(true, std::memory_order_release);
            c->current_.store(nullptr, std::memory_order_release);
            if (c->state_->phase == Phase::in_flight) completions::withdraw(c->state_->token);
            hazard::retire(std::move(c->state_->owner));
            // Open handles keep the block alive; what the engine owned goes now, so
            // that hooks' user_data is released when the engine is freed.
            c->state_->provider.reset();
            c->state_->store.reset();
            c->state_->spec.reset();
        }
        hazard::reclaim();
    }

    // --- registry -------------------------------------------------------------

    void add_provider(const std::string &name, std::shared_ptr<Provider> provider) {
        std::lock_guard lock(mutex_);
        if (!providers_.emplace(name, std::move(provider)).second) {
            throw Error(Status::exists, "a hook named \"" + name + "\" is already registered");
        }
    }

    void reserve(std::size_t count) {
        std::lock_guard lock(mutex_);
        slots_.reserve(count);
        by_id_.reserve(count);
        queue_.reserve(count);
    }

    void add(CredentialSpec &&spec) {
        if (auto why = check_identifier(spec.id))
            throw Error(Status::invalid_argument, "id " + *why);

        std::shared_ptr<Store> store;
        if (spec.store.kind == StoreSpec::Kind::file) {
            store = std::make_shared<FileStore>(spec.store.path);
        } else if (spec.store.kind == StoreSpec::Kind::vault_kv && spec.store.vault_kv) {
            store = std::make_shared<VaultKvStore>(
                spec.store.vault_kv, [weak = weak_from_this()](LogLevel level, std::string line) {
                    if (auto self = weak.lock()) self->log(level, std::move(line));
                });
        } else {
            // A memory store keeps nothing of its own: one serves every credential.
            static const auto memory = std::make_shared<MemoryStore>();
            store = memory;
        }
        // Reading the file happens outside the mutex; a failure leaves the file as is.
        std::optional<Snapshot> stored;
        std::shared_ptr<const SecretBytes> seed_refresh;
        try {
            stored = store->load();
            if (!stored && spec.seed_vault_kv) {
                seed_from_vault_kv(spec, stored, seed_refresh);
            } else if (!stored && !spec.seed_file.empty()) {
                if (spec.seed_format == "token_document") {
                    std::optional<ScrubbedString> text = read_private_file(spec.seed_file);
                    if (!text) {
                        throw Error(Status::not_found,
                                    "the seed file " + spec.seed_file + " does not exist");
                    }
                    stored = parse_token_document(text->str(), clock_->now());
                } else {
                    seed_refresh = std::make_shared<const SecretBytes>(
                        read_secret_file(spec.seed_file, "the seed file"));
                }
            }
        } catch (const Error &e) {
            throw Error(e.status(), "credential \"" + spec.id + "\": " + e.what());
        }

        auto block =
            std::make_shared<CredentialBlock>(std::move(spec.id), spec.serve_stale, clock_);
        std::shared_ptr<Credential> credential(block, &block->credential);
        Credential::State &st = block->state;
        st.store = std::move(store);
        st.seed_refresh = std::move(seed_refresh);
        spec.id.clear();

        {
            std::lock_guard lock(mutex_);
            if (started_) st.provider = resolve_provider(credential->id(), spec);
            st.spec = intern(std::move(spec));
            // Everything that can fail happens before the id is inserted; one probe
            // then both checks for a duplicate and inserts.
            const auto slot = free_slots_.empty() ? static_cast<DeadlineQueue::Slot>(slots_.size())
                                                  : free_slots_.back();
            if (slots_.size() == slots_.capacity()) {
                slots_.reserve(std::max<std::size_t>(16, slots_.capacity() * 2));
            }
            if (stored) st.owner = std::make_shared<const Snapshot>(std::move(*stored));
            if (by_id_.insert(credential->id(), slot)) {
                throw Error(Status::exists,
                            "credential \"" + credential->id() + "\" already exists");
            }
            credential->current_.store(st.owner.get(), std::memory_order_release);
            st.slot = slot;
            if (slot == slots_.size()) {
                slots_.push_back(credential);
            } else {
                free_slots_.pop_back();
                slots_[slot] = credential;
            }
            if (started_) {
                schedule_first(*credential, clock_->now());
                rearm();
            }
        }
        if (logging(LogLevel::debug)) {
            log(LogLevel::debug, "credential \"" + credential->id() + "\": added");
        }
    }

    void remove(std::string_view id) {
        std::vector<Event> events;
        std::vector<Release> releases;
        {
            std::lock_guard lock(mutex_);
            std::shared_ptr<Credential> c = lookup(id);
            Credential::State &st = *c->state_;
            if (started_ && !stopping_ && st.provider && st.provider->wants_release()) {
                releases.push_back(Release{c, st.provider, st.owner});
            }

            c->removed_.store(true, std::memory_order_release);
            if (st.phase == Phase::in_flight) {
                completions::withdraw(st.token);
                finish_flight(st);
            }
            queue_.cancel(st.slot);
            c->current_.store(nullptr, std::memory_order_release);
            hazard::retire(std::move(st.owner));
            by_id_.erase(c->id());  // before the slot empties: erasing reads ids
            slots_[st.slot] = nullptr;
            free_slots_.push_back(st.slot);
            events.push_back(make_event(EventType::removed, *c, clock_->now()));
            rearm();
        }
        emit(std::move(events));
        // Not waited for: the revocation of a lease, say, finishes in the background.
        (void)start_releases(releases, "removed",
                             std::chrono::steady_clock::now() + settings_.drain_timeout);
    }

    void refresh_now(std::string_view id) {
        std::lock_guard lock(mutex_);
        std::shared_ptr<Credential> c = lookup(id);
        if (!started_ || stopping_) {
            throw Error(Status::state, "credential \"" + std::string(id) +
                                           "\": cannot refresh: the engine is not running");
        }
        Credential::State &st = *c->state_;
        if (st.phase == Phase::in_flight) return;
        st.phase = Phase::idle;
        st.next_refresh = clock_->now();
        st.next_reason = "manual";
        reschedule(*c);
        rearm();
    }

    std::shared_ptr<const Credential> find(std::string_view id) const {
        std::lock_guard lock(mutex_);
        return lookup(id);
    }

    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return by_id_.size();
    }

    std::vector<std::string> credential_ids() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> ids;
        for (const auto &c : slots_)
            if (c) ids.push_back(c->id());
        std::sort(ids.begin(), ids.end());
        return ids;
    }

    // --- lifecycle ------------------------------------------------------------

    void start() {
        std::size_t count = 0;
        {
            std::lock_guard lock(mutex_);
            if (started_) return;
        }
        // Secrets first: a missing hook there also starts nothing.
        rotator_->start();
        try {
            start_credentials(count);
        } catch (...) {
            rotator_->begin_stop();
            rotator_->end_stop();
            throw;
        }
        log(LogLevel::info, "engine started with " + std::to_string(count) + " credential(s) and " +
                                std::to_string(rotator_->size()) + " secret(s)");
    }

    void start_credentials(std::size_t &count) {
        {
            std::lock_guard lock(mutex_);
            if (started_) return;
            // Resolve every provider first, so that a missing hook starts nothing.
            std::vector<std::shared_ptr<Provider>> resolved;
            resolved.reserve(slots_.size());
            for (auto &c : slots_) {
                resolved.push_back(c ? resolve_provider(c->id(), *c->state_->spec) : nullptr);
            }
            for (std::size_t i = 0; i < slots_.size(); ++i) {
                if (slots_[i]) slots_[i]->state_->provider = std::move(resolved[i]);
            }
            started_ = true;
            const TimePoint now = clock_->now();
            for (auto &c : slots_) {
                if (c && c->state_->phase != Phase::in_flight) schedule_first(*c, now);
            }
            count = by_id_.size();
            if (!manual_) {
                io_.restart();
                work_.emplace(io_.get_executor());
                for (int i = 0; i < settings_.threads; ++i) {
                    threads_.emplace_back([this] { run_worker(); });
                }
            }
            rearm();
        }
    }

    void stop(std::optional<Duration> drain) {
        if (on_engine_thread()) {
            throw Error(Status::state, "the engine cannot be stopped from its own callbacks");
        }
        std::unique_lock lock(mutex_);
        if (!started_) return;
        stopping_ = true;
        const auto deadline =
            std::chrono::steady_clock::now() + drain.value_or(settings_.drain_timeout);
        lock.unlock();
        rotator_->begin_stop();
        const std::size_t steps_left = rotator_->wait_drained(deadline);
        rotator_->end_stop();
        lock.lock();
        drained_.wait_until(lock, deadline, [this] { return in_flight_ == 0; });
        release_all(lock, deadline);
        const std::size_t abandoned = in_flight_;
        started_ = false;
        stopping_ = false;
        armed_at_.reset();
        timer_.cancel();
        // The HTTP client's kept-alive connections and their sweeper would hold the io
        // threads until the idle timeout; with no refresh left in flight it goes now (a
        // revocation past the deadline ends with it), and the next start makes a new one.
        std::shared_ptr<HttpClient> http;
        if (abandoned == 0) http = std::move(http_);
        lock.unlock();
        if (http) http->shutdown();

        if (abandoned != 0) {
            log(LogLevel::warning, "engine stopping with " + std::to_string(abandoned) +
                                       " refresh(es) still in flight; their results will be "
                                       "persisted if they arrive");
        }
        if (steps_left != 0) {
            log(LogLevel::warning, "engine stopping with " + std::to_string(steps_left) +
                                       " rotation step(s) still in flight; the journal has the "
                                       "last step that finished, and the next start resumes "
                                       "from there");
        }
        log(LogLevel::info, "engine stopped");
        // Threads finish every queued handler, pending events included, then return.
        work_.reset();
        for (auto &t : threads_)
            t.join();
        threads_.clear();
        worker_ids_.clear();
    }

    std::size_t poll() {
        process_due();
        rotator_->process_due();
        if (io_.stopped()) io_.restart();
        return io_.poll();
    }

    bool on_engine_thread() const {
        const auto self = std::this_thread::get_id();
        if (dispatching_thread_.load() == self) return true;
        std::lock_guard lock(worker_ids_mutex_);
        return std::find(worker_ids_.begin(), worker_ids_.end(), self) != worker_ids_.end();
    }

    // --- events and logs ------------------------------------------------------

    std::uint64_t subscribe(Subscriber subscriber) {
        std::lock_guard lock(listeners_mutex_);
        const std::uint64_t id = next_subscription_++;
        subscribers_.emplace_back(id, std::make_shared<Subscriber>(std::move(subscriber)));
        has_subscribers_.store(true, std::memory_order_release);
        return id;
    }

    void unsubscribe(std::uint64_t id) {
        std::shared_ptr<Subscriber> removed;
        {
            std::lock_guard lock(listeners_mutex_);
            auto it = std::find_if(subscribers_.begin(), subscribers_.end(),
                                   [&](const auto &s) { return s.first == id; });
            if (it == subscribers_.end()) {
                throw Error(Status::not_found, "no subscription " + std::to_string(id));
            }
            removed = std::move(it->second);
            subscribers_.erase(it);
            has_subscribers_.store(!subscribers_.empty(), std::memory_order_release);
        }
        // Wait for a delivery in progress on another thread, so that the subscriber is
        // never called after this returns.
        if (dispatching_thread_.load() != std::this_thread::get_id()) {
            std::lock_guard wait(delivery_mutex_);
        }
        // `removed` may be the last reference: its release runs here.
    }

    void set_logger(LogLevel min_level, Logger logger) {
        std::shared_ptr<Logger> old;
        {
            std::lock_guard lock(listeners_mutex_);
            old = std::move(logger_);
            logger_ = logger ? std::make_shared<Logger>(std::move(logger)) : nullptr;
            log_min_.store(logger_ ? static_cast<int>(min_level) : kLogOff,
                           std::memory_order_release);
        }
        if (dispatching_thread_.load() != std::this_thread::get_id()) {
            std::lock_guard wait(delivery_mutex_);
        }
    }

    // --- status ---------------------------------------------------------------

    std::string status_json(std::string_view id) const {
        std::lock_guard lock(mutex_);
        return json::serialize(status_of(*lookup(id)));
    }

    std::string status_json() const {
        std::lock_guard lock(mutex_);
        std::map<std::string_view, const Credential *> ordered;
        for (const auto &c : slots_) {
            if (c) ordered.emplace(c->id(), c.get());
        }
        json::array all;
        for (const auto &[id, c] : ordered)
            all.push_back(status_of(*c));
        return json::serialize(all);
    }

    // --- completions ----------------------------------------------------------

    Status on_outcome(std::uint32_t slot, std::uint64_t token, RefreshOutcome &&outcome) override {
        std::shared_ptr<Credential> c;
        std::shared_ptr<const Snapshot> prior;
        std::shared_ptr<const SecretBytes> seed_refresh;
        bool discard_refresh = false;
        {
            std::lock_guard lock(mutex_);
            if (slot >= slots_.size() || !slots_[slot] || slots_[slot]->state_->token != token ||
                slots_[slot]->state_->phase != Phase::in_flight) {
                return Status::stale_completion;
            }
            c = slots_[slot];
            prior = c->state_->owner;
            seed_refresh = c->state_->seed_refresh;
            discard_refresh = c->state_->discard_refresh;
        }
        const TimePoint now = clock_->now();

        if (auto *success = std::get_if<RefreshSuccess>(&outcome)) {
            const bool new_refresh = success->refresh.has_value();
            auto snapshot = std::make_shared<Snapshot>();
            snapshot->value = std::move(success->value);
            if (success->refresh) {
                snapshot->refresh = std::move(success->refresh);
            } else if (prior && prior->refresh && !discard_refresh) {
                snapshot->refresh = prior->refresh;
            } else if (!prior && seed_refresh && !discard_refresh) {
                snapshot->refresh = *seed_refresh;
            }
            snapshot->issued_at = now;
            snapshot->expires_at = success->expires_at
                                       ? *success->expires_at
                                       : now + success->expires_in.value_or(Duration::zero());
            snapshot->renewable = success->renewable;
            snapshot->max_lifetime = success->max_lifetime;
            snapshot->version = prior ? prior->version + 1 : 1;
            snapshot->metadata = std::move(success->metadata);

            if (snapshot->expires_at <= now) {
                RefreshFailure f{"the new value had already expired when it arrived",
                                 FailureAction::retry, std::nullopt};
                if (new_refresh) f.refresh = std::move(snapshot->refresh);
                return fail(c, token, now, std::move(f), prior);
            }
            return publish(c, token, now, std::move(snapshot));
        }
        return fail(c, token, now, std::get<RefreshFailure>(std::move(outcome)), prior);
    }

    Status on_step_outcome(std::uint32_t, std::uint64_t, StepOutcome &&) override {
        return Status::stale_completion;
    }

  private:
    static constexpr int kLogOff = 1000;

    // An event or a log line waiting to be delivered.
    struct Outgoing {
        std::optional<Event> event;
        LogLevel level;
        std::string line;
    };

    static Error not_found(std::string_view id) {
        return Error(Status::not_found, "no credential \"" + std::string(id) + "\"");
    }

    // What a provider holds for a credential that goes away, to be given back.
    struct Release {
        std::shared_ptr<Credential> credential;
        std::shared_ptr<Provider> provider;
        std::shared_ptr<const Snapshot> current;
    };

    struct ReleaseWait {
        std::mutex mutex;
        std::condition_variable done;
        std::size_t left = 0;
    };

    // Hands each release to its provider, outside mutex_. The result counts down as
    // providers finish.
    std::shared_ptr<ReleaseWait> start_releases(const std::vector<Release> &releases,
                                                std::string_view reason,
                                                std::chrono::steady_clock::time_point deadline) {
        auto wait = std::make_shared<ReleaseWait>();
        wait->left = releases.size();
        for (const Release &r : releases) {
            auto once = std::make_shared<std::atomic<bool>>(false);
            auto done = [wait, once] {
                if (once->exchange(true)) return;
                std::lock_guard lock(wait->mutex);
                if (--wait->left == 0) wait->done.notify_all();
            };
            ReleaseRequest request;
            request.credential = r.credential->id();
            request.reason = reason;
            request.current = r.current.get();
            request.deadline = deadline;
            try {
                r.provider->release(request, done);
            } catch (const std::exception &e) {
                log(LogLevel::warning,
                    "credential \"" + r.credential->id() + "\": releasing it failed: " + e.what());
                done();
            }
        }
        return wait;
    }

    // Lets providers give back what they hold (revoke a Vault lease, say) while the io
    // threads still run, and waits for them until the stop's deadline. Called with
    // mutex_ held through `lock`; returns with it held.
    void release_all(std::unique_lock<std::mutex> &lock,
                     std::chrono::steady_clock::time_point deadline) {
        std::vector<Release> releases;
        for (const auto &c : slots_) {
            if (c && c->state_->provider && c->state_->provider->wants_release()) {
                releases.push_back(Release{c, c->state_->provider, c->state_->owner});
            }
        }
        if (releases.empty()) return;
        lock.unlock();
        auto wait = start_releases(releases, "stopping", deadline);
        if (!manual_) {
            std::unique_lock waiting(wait->mutex);
            wait->done.wait_until(waiting, deadline, [&] { return wait->left == 0; });
        }
        lock.lock();
    }

    std::shared_ptr<Provider> resolve_provider(const std::string &id, const CredentialSpec &spec) {
        if ((spec.provider.type == "vault_token" || spec.provider.type == "vault_lease") &&
            spec.provider.vault) {
            return std::make_shared<VaultProvider>(
                http_client(), io_, *spec.provider.vault,
                [weak = weak_from_this()](LogLevel level, std::string line) {
                    if (auto self = weak.lock()) self->log(level, std::move(line));
                });
        }
        if ((spec.provider.type == "oauth2" || spec.provider.type == "http_json") &&
            spec.provider.http) {
            try {
                if (spec.provider.type == "oauth2") {
                    return std::make_shared<OAuth2Provider>(http_client(), *spec.provider.http);
                }
                return std::make_shared<HttpJsonProvider>(http_client(), *spec.provider.http);
            } catch (const Error &e) {
                throw Error(e.status(), "credential \"" + id + "\": " + e.what());
            }
        }
        if (spec.provider.type == "exec") {
            ExecCommand command;
            command.argv = spec.provider.command;
            command.env = spec.provider.env;
            command.timeout = spec.hook_timeout.value_or(settings_.hook_timeout);
            return std::make_shared<ExecProvider>(
                io_, std::move(command),
                [weak = weak_from_this()](LogLevel level, std::string line) {
                    if (auto self = weak.lock()) self->log(level, std::move(line));
                });
        }
        auto it = providers_.find(spec.provider.name);
        if (it == providers_.end()) {
            throw Error(Status::not_found, "credential \"" + id + "\": no hook named \"" +
                                               spec.provider.name + "\" is registered");
        }
        return it->second;
    }

    // Reads a credential's first value (a token document) or refresh token from the
    // Vault KV secret its seed names. Throws Error naming the seed and what was wrong.
    void seed_from_vault_kv(const CredentialSpec &spec, std::optional<Snapshot> &stored,
                            std::shared_ptr<const SecretBytes> &seed_refresh) {
        const std::string where = "the seed " + describe_vault_kv(*spec.seed_vault_kv);
        std::optional<ScrubbedString> fields;
        try {
            fields = read_vault_kv_secret(
                spec.seed_vault_kv, [weak = weak_from_this()](LogLevel level, std::string line) {
                    if (auto self = weak.lock()) self->log(level, std::move(line));
                });
        } catch (const Error &e) {
            throw Error(e.status(), std::string("the seed ") + e.what());
        }
        if (!fields) throw Error(Status::not_found, where + " holds nothing");
        try {
            if (spec.seed_format == "token_document") {
                stored = parse_token_document(fields->str(), clock_->now());
            } else {
                seed_refresh = std::make_shared<const SecretBytes>(
                    refresh_token_field(fields->str(), spec.seed_field));
            }
        } catch (const Error &e) {
            throw Error(e.status(), where + ": " + e.what());
        }
    }

    // The HTTPS client that every HTTP provider of this engine shares, made on first
    // use. Called with mutex_ held.
    std::shared_ptr<HttpClient> http_client() {
        if (!http_) {
            HttpClientOptions options;
            const auto per_origin = static_cast<std::size_t>(settings_.http_connections_per_origin);
            options.max_connections_per_origin = per_origin;
            options.max_idle_per_origin = per_origin;
            options.log = [weak = weak_from_this()](LogLevel level, std::string line) {
                if (auto self = weak.lock()) self->log(level, std::move(line));
            };
            http_ = std::make_shared<HttpClient>(io_, std::move(options));
        }
        return http_;
    }

    // Called with mutex_ held.
    std::shared_ptr<Credential> lookup(std::string_view id) const {
        auto slot = by_id_.find(id);
        if (!slot) throw not_found(id);
        return slots_[*slot];
    }

    // Returns the shared copy of a spec equal to `spec` (whose id is empty), adding
    // it if there is none. Called with mutex_ held.
    std::shared_ptr<const CredentialSpec> intern(CredentialSpec &&spec) {
        // A spec that equals no other would only sit in the table.
        if (spec.has_unique_part()) return std::make_shared<const CredentialSpec>(std::move(spec));
        const std::size_t hash = hash_of(spec);
        auto [first, last] = specs_.equal_range(hash);
        for (auto it = first; it != last;) {
            if (auto existing = it->second.lock()) {
                if (*existing == spec) return existing;
                ++it;
            } else {
                it = specs_.erase(it);  // no credential uses it any more
            }
        }
        auto shared = std::make_shared<const CredentialSpec>(std::move(spec));
        specs_.emplace(hash, shared);
        return shared;
    }

    double random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

    // Decides a credential's first refresh: at once without a valid stored value,
    // otherwise when its policy says, so a restart does not refresh needlessly.
    void schedule_first(Credential &c, TimePoint now) {
        Credential::State &st = *c.state_;
        if (st.phase == Phase::gave_up) return;
        if (st.owner && st.owner->expires_at > now) {
            st.next_refresh = next_refresh(st.spec->policy, st.owner->issued_at,
                                           st.owner->expires_at, now, random01());
            st.next_reason = "scheduled";
        } else {
            st.next_refresh = now;
            st.next_reason = st.owner ? "scheduled" : "initial";
        }
        reschedule(c);
    }

    // Puts the credential's next deadline in the queue: the end of a flight, the next
    // refresh, or the expiry still to be announced, whichever comes first.
    void reschedule(Credential &c) {
        Credential::State &st = *c.state_;
        TimePoint when = st.phase == Phase::in_flight ? st.in_flight_deadline
                         : st.phase == Phase::gave_up ? kNever
                                                      : st.next_refresh;
        if (st.owner && !st.announced_expired) when = std::min(when, st.owner->expires_at);
        if (when == kNever) {
            queue_.cancel(st.slot);
        } else {
            queue_.schedule(st.slot, when);
        }
    }

    // Arms the one timer at the queue's earliest deadline.
    void rearm() {
        if (!started_ || stopping_ || manual_) return;
        std::optional<TimePoint> earliest = queue_.earliest();
        if (earliest == armed_at_) return;
        armed_at_ = earliest;
        if (!earliest) {
            timer_.cancel();
            return;
        }
        timer_.expires_at(std::chrono::time_point_cast<asio::system_timer::duration>(*earliest));
        timer_.async_wait([weak = weak_from_this()](const boost::system::error_code &ec) {
            // Cancelled because the deadline moved or the engine stopped: nothing to do.
            if (ec == asio::error::operation_aborted) return;
            if (auto self = weak.lock()) self->process_due();
        });
    }

    void run_worker() {
        {
            std::lock_guard lock(worker_ids_mutex_);
            worker_ids_.push_back(std::this_thread::get_id());
        }
        io_.run();
    }

    void process_due() {
        std::vector<Launch> launches;
        std::vector<Event> events;
        bool more = false;
        {
            std::lock_guard lock(mutex_);
            armed_at_.reset();
            if (!started_ || stopping_) return;
            const TimePoint now = clock_->now();
            for (std::size_t n = 0; n < kDueBatch; ++n) {
                auto slot = queue_.pop_due(now);
                if (!slot) break;
                handle_due(*slots_[*slot], now, launches, events);
            }
            auto earliest = queue_.earliest();
            more = earliest && *earliest <= now;
            if (!more) rearm();
        }
        emit(std::move(events));
        for (Launch &l : launches)
            start_refresh(l);
        // Yield between batches so that other work (completions, events) interleaves.
        if (more) {
            asio::post(io_, [weak = weak_from_this()] {
                if (auto self = weak.lock()) self->process_due();
            });
        }
    }

    void handle_due(Credential &c, TimePoint now, std::vector<Launch> &launches,
                    std::vector<Event> &events) {
        Credential::State &st = *c.state_;
        if (st.phase == Phase::in_flight && now >= st.in_flight_deadline) {
            // Withdrawing fails only when a completion has just claimed the token; it
            // then finishes the refresh itself.
            if (!completions::withdraw(st.token)) return;
            const Duration timeout = st.spec->hook_timeout.value_or(settings_.hook_timeout);
            char seconds[32];
            std::snprintf(seconds, sizeof seconds, "%.3gs", to_seconds(timeout));
            std::string text = st.spec->provider.describe() + " did not answer within " + seconds;
            apply_failure(c, now, RefreshFailure{text, FailureAction::retry, std::nullopt}, events);
        }
        if (st.owner && !st.announced_expired && now >= st.owner->expires_at) {
            st.announced_expired = true;
            Event e = make_event(EventType::expired, c, now);
            e.expires_at = st.owner->expires_at;
            events.push_back(std::move(e));
        }
        if (st.phase == Phase::idle && now >= st.next_refresh) {
            launches.push_back(prepare_launch(c, now));
        }
        reschedule(c);
    }

    Launch prepare_launch(Credential &c, TimePoint now) {
        Credential::State &st = *c.state_;
        st.phase = Phase::in_flight;
        ++in_flight_;
        st.token = completions::open(weak_from_this(), st.slot);
        st.in_flight_deadline = now + st.spec->hook_timeout.value_or(settings_.hook_timeout);
        if (st.spec->provider.type == "exec") st.in_flight_deadline += kExecGrace;

        Launch l;
        l.credential = slots_[st.slot];
        l.provider = st.provider;
        l.current = st.owner;
        l.reason = st.next_reason;
        l.attempt = st.failures + 1;
        l.use_refresh = !st.discard_refresh;
        l.token = st.token;
        if (!st.owner && !st.discard_refresh) l.seed_refresh = st.seed_refresh;
        if (st.owner && !st.owner->metadata.empty()) {
            Metadata merged = st.spec->metadata;
            for (const auto &[k, v] : st.owner->metadata)
                merged.insert_or_assign(k, v);
            l.merged_metadata = std::move(merged);
        }
        return l;
    }

    // Runs outside the mutex, on a worker thread (or the polling thread).
    void start_refresh(Launch &l) {
        RefreshRequest request;
        request.credential = l.credential->id();
        request.reason = l.reason;
        request.attempt = l.attempt;
        request.current = l.current.get();
        request.refresh =
            (l.use_refresh && l.current && l.current->refresh) ? &*l.current->refresh : nullptr;
        if (request.refresh == nullptr && l.seed_refresh) request.refresh = l.seed_refresh.get();
        // The spec is not changed after the credential is added.
        request.metadata =
            l.merged_metadata ? &*l.merged_metadata : &l.credential->state_->spec->metadata;
        try {
            l.provider->refresh(request, Completion(l.token));
        } catch (const std::exception &e) {
            (void)completions::complete(
                l.token, RefreshFailure{std::string("the provider failed: ") + e.what(),
                                        FailureAction::retry, std::nullopt});
        }
    }

    void finish_flight(Credential::State &st) {
        st.phase = Phase::idle;
        st.token = 0;
        if (--in_flight_ == 0) drained_.notify_all();
    }

    // Persists, then publishes: new refresh material is durable before any reader or
    // the hook's caller sees success.
    Status publish(const std::shared_ptr<Credential> &c, std::uint64_t token, TimePoint now,
                   std::shared_ptr<Snapshot> snapshot) {
        std::string store_error;
        try {
            c->state_->store->persist(*snapshot);
        } catch (const std::exception &e) {
            store_error = e.what();
        }

        std::vector<Event> events;
        {
            std::lock_guard lock(mutex_);
            Credential::State &st = *c->state_;
            if (c->removed_.load(std::memory_order_acquire) || st.token != token) {
                return Status::stale_completion;
            }
            std::shared_ptr<const Snapshot> published = std::move(snapshot);
            c->current_.store(published.get(), std::memory_order_release);
            hazard::retire(std::exchange(st.owner, published));

            finish_flight(st);
            st.seed_refresh.reset();  // the stored snapshot carries the refresh material now
            st.failures = 0;
            st.discard_refresh = false;
            st.announced_expiring = false;
            st.announced_expired = false;
            st.last_error = store_error;
            st.next_refresh = next_refresh(st.spec->policy, published->issued_at,
                                           published->expires_at, now, random01());
            st.next_reason = "scheduled";
            reschedule(*c);
            rearm();

            if (wants_events(store_error.empty() ? LogLevel::info : LogLevel::error)) {
                Event e = make_event(EventType::refreshed, *c, now);
                e.version = published->version;
                e.fingerprint = published->value.fingerprint();
                e.expires_at = published->expires_at;
                e.next_refresh_at = st.next_refresh;
                e.persisted = store_error.empty();
                e.error = store_error;
                events.push_back(std::move(e));
            }
        }
        emit(std::move(events));
        return store_error.empty() ? Status::ok : Status::store;
    }

    Status fail(const std::shared_ptr<Credential> &c, std::uint64_t token, TimePoint now,
                RefreshFailure failure, const std::shared_ptr<const Snapshot> &prior) {
        if (prior) {
            scrub(failure.reason, &prior->value);
            if (prior->refresh) scrub(failure.reason, &*prior->refresh);
        }
        // New refresh material that came with an unusable answer replaces the old, which
        // the issuer may have rotated away: stored with the value still held (same
        // version, same expiry), or, with no value yet, kept where the seed's was.
        const bool renewed = failure.refresh.has_value();
        std::shared_ptr<Snapshot> kept;
        if (renewed) {
            scrub(failure.reason, &*failure.refresh);
            if (prior) {
                kept = std::make_shared<Snapshot>(*prior);
                kept->refresh = std::move(failure.refresh);
                try {
                    c->state_->store->persist(*kept);
                } catch (const std::exception &e) {
                    failure.reason += "; the new refresh material was not stored: ";
                    failure.reason += e.what();
                }
            }
        }
        std::vector<Event> events;
        {
            std::lock_guard lock(mutex_);
            Credential::State &st = *c->state_;
            if (c->removed_.load(std::memory_order_acquire) || st.token != token) {
                return Status::stale_completion;
            }
            if (kept) {
                std::shared_ptr<const Snapshot> same_value = std::move(kept);
                c->current_.store(same_value.get(), std::memory_order_release);
                hazard::retire(std::exchange(st.owner, same_value));
            } else if (renewed && !st.owner) {
                st.seed_refresh = std::make_shared<const SecretBytes>(std::move(*failure.refresh));
            }
            if (renewed) st.discard_refresh = false;
            apply_failure(*c, now, std::move(failure), events);
            reschedule(*c);
            rearm();
        }
        emit(std::move(events));
        return Status::ok;
    }

    void apply_failure(Credential &c, TimePoint now, RefreshFailure failure,
                       std::vector<Event> &events) {
        Credential::State &st = *c.state_;
        finish_flight(st);
        ++st.failures;
        st.last_error = failure.reason;

        std::optional<TimePoint> expires;
        if (st.owner) expires = st.owner->expires_at;
        std::optional<TimePoint> not_before;
        if (failure.retry_after) not_before = now + *failure.retry_after;

        Event e = make_event(EventType::refresh_failed, c, now);
        e.error = failure.reason;
        e.attempt = st.failures;
        e.action = failure_action_name(failure.action);
        if (failure.action == FailureAction::give_up) {
            st.phase = Phase::gave_up;
            st.next_refresh = kNever;
        } else {
            if (failure.action == FailureAction::login) st.discard_refresh = true;
            st.next_refresh =
                retry_at(st.spec->policy, now, expires, st.failures, random01(), not_before);
            st.next_reason = st.discard_refresh ? "login" : "retry";
            e.retry_at = st.next_refresh;
        }
        events.push_back(std::move(e));

        if (st.owner && !st.announced_expiring && now < st.owner->expires_at) {
            const Duration lifetime = st.owner->expires_at - st.owner->issued_at;
            if (now >= st.owner->expires_at - effective_lead(st.spec->policy, lifetime)) {
                st.announced_expiring = true;
                Event x = make_event(EventType::expiring, c, now);
                x.expires_at = st.owner->expires_at;
                events.push_back(std::move(x));
            }
        }
    }

    Event make_event(EventType type, const Credential &c, TimePoint now) const {
        Event e;
        e.type = type;
        e.credential = c.id();
        e.time = now;
        return e;
    }

    json::object status_of(const Credential &c) const {
        const Credential::State &st = *c.state_;
        const TimePoint now = clock_->now();
        json::object o;
        o["id"] = c.id();
        const char *state = "pending";
        if (st.phase == Phase::gave_up) {
            state = "failed";
        } else if (st.owner && now >= st.owner->expires_at) {
            state = "expired";
        } else if (st.phase == Phase::in_flight) {
            state = "refreshing";
        } else if (st.announced_expiring) {
            state = "expiring";
        } else if (st.owner) {
            state = "fresh";
        }
        o["state"] = state;
        o["hook"] = st.spec->provider.type == "exec" ? st.spec->provider.command.front()
                                                     : st.spec->provider.name;
        o["store"] = st.store->describe();
        if (st.owner) {
            o["version"] = st.owner->version;
            o["fingerprint"] = st.owner->value.fingerprint();
            o["issued_at"] = to_unix_seconds(st.owner->issued_at);
            o["expires_at"] = to_unix_seconds(st.owner->expires_at);
            o["has_refresh"] = st.owner->refresh.has_value();
        } else {
            o["version"] = 0;
            o["fingerprint"] = nullptr;
            o["issued_at"] = nullptr;
            o["expires_at"] = nullptr;
            o["has_refresh"] = false;
        }
        if (st.next_refresh != kNever && st.phase == Phase::idle && started_) {
            o["next_refresh_at"] = to_unix_seconds(st.next_refresh);
        } else {
            o["next_refresh_at"] = nullptr;
        }
        o["attempt"] = st.failures;
        o["last_error"] = st.last_error;
        o["serve_stale"] = c.serve_stale_;
        return o;
    }

    // --- delivery -------------------------------------------------------------

    bool wants_events(LogLevel level) const {
        return has_subscribers_.load(std::memory_order_acquire) ||
               log_min_.load(std::memory_order_acquire) <= static_cast<int>(level);
    }

    bool logging(LogLevel level) const {
        return log_min_.load(std::memory_order_acquire) <= static_cast<int>(level);
    }

    void log(LogLevel level, std::string line) {
        if (!logging(level)) return;
        std::lock_guard lock(outbox_mutex_);
        outbox_.push_back(Outgoing{std::nullopt, level, std::move(line)});
        schedule_delivery();
    }

    void emit(std::vector<Event> events) {
        if (events.empty()) return;
        const bool subscribed = has_subscribers_.load(std::memory_order_acquire);
        std::lock_guard lock(outbox_mutex_);
        for (Event &e : events) {
            const LogLevel level = log_level_of(e.type, e.persisted);
            if (!subscribed && !logging(level)) continue;
            outbox_.push_back(Outgoing{std::move(e), level, {}});
        }
        if (!outbox_.empty()) schedule_delivery();
    }

    // Called with outbox_mutex_ held.
    void schedule_delivery() {
        if (delivery_posted_) return;
        delivery_posted_ = true;
        asio::post(io_, [weak = weak_from_this()] {
            if (auto self = weak.lock()) self->deliver();
        });
    }

    void deliver() {
        std::lock_guard delivering(delivery_mutex_);
        dispatching_thread_.store(std::this_thread::get_id());
        for (;;) {
            std::deque<Outgoing> batch;
            {
                std::lock_guard lock(outbox_mutex_);
                if (outbox_.empty()) {
                    delivery_posted_ = false;
                    break;
                }
                batch.swap(outbox_);
            }
            for (Outgoing &item : batch)
                deliver_one(item);
        }
        dispatching_thread_.store(std::thread::id());
    }

    void deliver_one(const Outgoing &item) {
        std::vector<std::shared_ptr<Subscriber>> subscribers;
        std::shared_ptr<Logger> logger;
        int log_min;
        {
            std::lock_guard lock(listeners_mutex_);
            if (item.event) {
                subscribers.reserve(subscribers_.size());
                for (const auto &s : subscribers_)
                    subscribers.push_back(s.second);
            }
            logger = logger_;
            log_min = log_min_.load();
        }
        // Callbacks must not throw into the engine; one that does loses that call only.
        for (const auto &s : subscribers) {
            try {
                (*s)(*item.event);
            } catch (...) {
            }
        }
        if (logger && static_cast<int>(item.level) >= log_min) {
            try {
                (*logger)(item.level, item.event ? item.event->to_log_line() : item.line);
            } catch (...) {
            }
        }
    }

    const EngineSettings settings_;
    const std::shared_ptr<const Clock> clock_;
    const bool manual_;

    asio::io_context io_;
    // Declared after io_, so that they go first: their timers and sockets belong to io_.
    std::shared_ptr<Rotator> rotator_;
    std::shared_ptr<HttpClient> http_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::vector<std::thread> threads_;
    mutable std::mutex worker_ids_mutex_;
    std::vector<std::thread::id> worker_ids_;

    // Everything below up to the next comment is guarded by mutex_.
    mutable std::mutex mutex_;
    std::condition_variable drained_;
    asio::system_timer timer_;
    std::optional<TimePoint> armed_at_;
    bool started_ = false;
    bool stopping_ = false;
    std::size_t in_flight_ = 0;
    std::mt19937_64 rng_;
    std::unordered_map<std::string, std::shared_ptr<Provider>> providers_;
    std::vector<std::shared_ptr<Credential>> slots_;
    std::vector<DeadlineQueue::Slot> free_slots_;
    IdIndex by_id_{[this](IdIndex::Slot s) { return std::string_view(slots_[s]->id()); }};
    std::unordered_multimap<std::size_t, std::weak_ptr<const CredentialSpec>> specs_;
    DeadlineQueue queue_;

    // Delivery of events and log lines.
    std::mutex outbox_mutex_;
    std::deque<Outgoing> outbox_;
    bool delivery_posted_ = false;
    std::mutex delivery_mutex_;
    std::atomic<std::thread::id> dispatching_thread_{};
    std::mutex listeners_mutex_;
    std::vector<std::pair<std::uint64_t, std::shared_ptr<Subscriber>>> subscribers_;
    std::shared_ptr<Logger> logger_;
    std::atomic<bool> has_subscribers_{false};
    std::atomic<int> log_min_{kLogOff};
    std::uint64_t next_subscription_ = 1;
};

// ---------------------------------------------------------------------------------
// Engine

Engine::Engine(EngineSettings settings, std::shared_ptr<const Clock> clock)
    : core_(std::make_shared<EngineCore>(settings, std::move(clock))) {
    core_->make_rotator();
}

Engine::~Engine() {
    try {
        core_->stop(std::nullopt);
    } catch (...) {
        // Destroyed from one of its own threads, against the contract: leak the core
        // rather than have a thread join itself.
        (void)new std::shared_ptr<EngineCore>(std::move(core_));
    }
}

void Engine::add_provider(const std::string &name, std::shared_ptr<Provider> provider) {
    core_->add_provider(name, std::move(provider));
}
void Engine::add(CredentialSpec spec) {
    core_->add(std::move(spec));
}
void Engine::remove(std::string_view id) {
    core_->remove(id);
}
void Engine::refresh_now(std::string_view id) {
    core_->refresh_now(id);
}
void Engine::start() {
    core_->start();
}
void Engine::stop(std::optional<Duration> drain) {
    core_->stop(drain);
}
std::size_t Engine::poll() {
    return core_->poll();
}
std::shared_ptr<const Credential> Engine::find(std::string_view id) const {
    return core_->find(id);
}
std::string Engine::status_json(std::string_view id) const {
    return core_->status_json(id);
}
std::string Engine::status_json() const {
    return core_->status_json();
}
std::size_t Engine::size() const {
    return core_->size();
}
std::uint64_t Engine::subscribe(Subscriber subscriber) {
    return core_->subscribe(std::move(subscriber));
}
void Engine::unsubscribe(std::uint64_t id) {
    core_->unsubscribe(id);
}
void Engine::set_logger(LogLevel min_level, Logger logger) {
    core_->set_logger(min_level, std::move(logger));
}
bool Engine::on_engine_thread() const {
    return core_->on_engine_thread();
}
void Engine::reserve(std::size_t count) {
    core_->reserve(count);
}
void Engine::add_secret(SecretSpec spec) {
    core_->rotator().add(std::move(spec));
}
void Engine::remove_secret(std::string_view id) {
    core_->rotator().remove(id);
}
std::string Engine::rotate_now(std::string_view id) {
    return core_->rotator().rotate_now(id);
}
void Engine::seed_secret(std::string_view id, SecretBytes value) {
    core_->rotator().seed(id, std::move(value));
}
SecretBytes Engine::read_secret(std::string_view id, std::string_view label,
                                std::string *version) const {
    const Rotator &r = core_->rotator();
    SecretBytes value = r.read(id, label);
    if (version != nullptr) *version = r.version_of(id, label);
    return value;
}
std::string Engine::secret_status_json(std::string_view id) const {
    return core_->rotator().status_json(id);
}
std::string Engine::secret_status_json() const {
    return core_->rotator().status_json();
}
std::vector<std::string> Engine::secret_ids() const {
    return core_->rotator().ids();
}
std::vector<std::string> Engine::credential_ids() const {
    return core_->credential_ids();
}

}  // namespace keyturn
