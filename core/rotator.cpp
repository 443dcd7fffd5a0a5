#include "core/rotator.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>

#include "core/deadline_queue.hpp"
#include "core/exec_runner.hpp"
#include "core/json_support.hpp"
#include "core/rotation.hpp"
#include "core/schedule.hpp"
#include "core/status.hpp"
#include "core/step_hook.hpp"
#include "core/store.hpp"
#include "core/vault_kv_store.hpp"

namespace keyturn {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// An exec hook gets this much longer from the rotator than from its runner, so that
// the runner's timeout (which kills the process group) is the one that reports.
constexpr Duration kExecGrace = std::chrono::seconds(5);

// What to do when a secret's deadline comes and no rotation is in flight.
enum class NextStart { none, initial, scheduled, restart };

struct Entry {
    std::shared_ptr<const SecretSpec> spec;
    std::unique_ptr<SecretStore> store;
    SecretState state;
    DeadlineQueue::Slot slot = 0;
    // Callback hooks by step, resolved at start.
    std::array<HookProvider::Function, 4> callbacks;

    bool in_flight = false;
    std::uint64_t token = 0;
    RotationStep step = RotationStep::create;
    TimePoint in_flight_deadline{};

    TimePoint next_at = kNever;
    NextStart next_start = NextStart::none;
    int restart_round = 0;
    // Consecutive failures across rounds; drives the backoff.
    int failures = 0;
};

// A step about to run, prepared under the mutex and started after it is released.
struct Launch {
    std::string secret;
    RotationStep step;
    HookSpec hook;
    HookProvider::Function callback;
    ScrubbedString request;
    std::vector<SecretBytes> redact;
    std::uint64_t token;
    Duration timeout;
};

void scrub_all(std::string &text, const SecretState &state) {
    auto scrub = [&text](const SecretBytes &secret) {
        if (secret.size() < 4) return;
        std::string_view needle = secret.reveal();
        const std::string replacement = "[secret " + secret.fingerprint() + "]";
        for (std::size_t at = text.find(needle); at != std::string::npos;
             at = text.find(needle, at + replacement.size())) {
            text.replace(at, needle.size(), replacement);
        }
    };
    if (state.current) scrub(state.current->value);
    if (state.pending) scrub(state.pending->value);
    for (const auto &v : state.past)
        scrub(v.value);
    for (const auto &v : state.abandoned)
        scrub(v.value);
}

std::vector<SecretBytes> values_of(const SecretState &state) {
    std::vector<SecretBytes> out;
    if (state.current) out.push_back(state.current->value);
    if (state.pending) out.push_back(state.pending->value);
    for (const auto &v : state.past)
        out.push_back(v.value);
    for (const auto &v : state.abandoned)
        out.push_back(v.value);
    return out;
}

std::optional<std::string> normalise_label(std::string_view label) {
    std::string upper(label);
    for (char &c : upper)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper == "CURRENT" || upper == "PREVIOUS" || upper == "PENDING") return upper;
    return std::nullopt;
}

const SecretVersion *labelled(const SecretState &state, const std::string &label) {
    if (label == "CURRENT") return state.current ? &*state.current : nullptr;
    if (label == "PENDING") return state.pending ? &*state.pending : nullptr;
    return state.previous();
}

std::optional<TimePoint> maybe(TimePoint t) {
    if (t == kNever) return std::nullopt;
    return t;
}

}  // namespace

struct Rotator::Impl {
    Rotator &owner;
    Services services;
    asio::system_timer timer;
    const bool manual;

    mutable std::mutex mutex;
    std::condition_variable drained;
    std::optional<TimePoint> armed_at;
    bool started = false;
    bool stopping = false;
    std::size_t in_flight = 0;
    std::mt19937_64 rng{std::random_device{}()};
    std::vector<std::unique_ptr<Entry>> slots;
    std::vector<DeadlineQueue::Slot> free_slots;
    std::map<std::string, DeadlineQueue::Slot, std::less<>> by_id;
    DeadlineQueue queue;

    Impl(Rotator &o, Services s)
        : owner(o),
          services(std::move(s)),
          timer(*services.io),
          manual(services.clock->is_manual()) {}

    double random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

    const std::string &id_of(const Entry &e) const { return e.spec->id; }

    Entry &lookup(std::string_view id) const {
        auto it = by_id.find(id);
        if (it == by_id.end()) {
            throw Error(Status::not_found, "no secret \"" + std::string(id) + "\"");
        }
        return *slots[it->second];
    }

    Event make_event(EventType type, const Entry &e, TimePoint now) const {
        Event ev;
        ev.type = type;
        ev.secret = true;
        ev.credential = id_of(e);
        ev.time = now;
        return ev;
    }

    // --- scheduling -----------------------------------------------------------

    void schedule_first(Entry &e, TimePoint now) {
        if (e.in_flight) return;
        if (e.state.rotation) {
            e.next_at = now;  // resume where the journal stopped
            e.next_start = NextStart::none;
        } else if (!e.state.current) {
            e.next_at = now;
            e.next_start = NextStart::initial;
        } else if (e.spec->schedule) {
            e.next_at = next_rotation(*e.spec->schedule, e.state.last_rotated, now, random01());
            e.next_start = NextStart::scheduled;
        } else {
            e.next_at = kNever;
            e.next_start = NextStart::none;
        }
        reschedule(e);
    }

    void schedule_after_finish(Entry &e, TimePoint now) {
        if (e.spec->schedule) {
            e.next_at = next_rotation(*e.spec->schedule, e.state.last_rotated, now, random01());
            e.next_start = NextStart::scheduled;
        } else {
            e.next_at = kNever;
            e.next_start = NextStart::none;
        }
    }

    void reschedule(Entry &e) {
        const TimePoint when = e.in_flight ? e.in_flight_deadline : e.next_at;
        if (when == kNever) {
            queue.cancel(e.slot);
        } else {
            queue.schedule(e.slot, when);
        }
    }

    void rearm() {
        if (!started || stopping || manual) return;
        std::optional<TimePoint> earliest = queue.earliest();
        if (earliest == armed_at) return;
        armed_at = earliest;
        if (!earliest) {
            timer.cancel();
            return;
        }
        timer.expires_at(std::chrono::time_point_cast<asio::system_timer::duration>(*earliest));
        timer.async_wait([weak = owner.weak_from_this()](const boost::system::error_code &ec) {
            if (ec == asio::error::operation_aborted) return;
            if (auto self = weak.lock()) self->process_due();
        });
    }

    // --- persistence ----------------------------------------------------------

    // Journals the state. On failure the state is put back as it was and the reason
    // is returned; the caller decides what the failure means.
    std::optional<std::string> persist(Entry &e, SecretState &&before) {
        try {
            e.store->persist(e.state);
            return std::nullopt;
        } catch (const std::exception &ex) {
            e.state = std::move(before);
            return std::string("the journal could not be written: ") + ex.what();
        }
    }

    // --- running steps --------------------------------------------------------

    // Called with the mutex held when e's deadline has come and nothing is in flight.
    void act(Entry &e, TimePoint now, std::vector<Launch> &launches, std::vector<Event> &events) {
        if (!e.state.rotation) {
            if (e.next_start == NextStart::none) {
                e.next_at = kNever;
                return;
            }
            if (e.next_start == NextStart::scheduled && e.spec->schedule &&
                !may_start(*e.spec->schedule, e.state.last_rotated, now)) {
                // Late past its window: wait for the next one.
                e.next_at = next_rotation(*e.spec->schedule, e.state.last_rotated, now, random01());
                return;
            }
            const char *reason = e.next_start == NextStart::initial   ? "initial"
                                 : e.next_start == NextStart::restart ? "restart"
                                                                      : "scheduled";
            const int round = e.next_start == NextStart::restart ? e.restart_round : 1;
            if (!start_rotation(e, reason, round, now, events)) return;
        }
        launches.push_back(prepare(e, now));
    }

    // Begins a rotation and journals it. False (with a retry scheduled) when the
    // journal cannot be written: no step runs before its start is durable.
    bool start_rotation(Entry &e, const std::string &reason, int round, TimePoint now,
                        std::vector<Event> &events) {
        SecretState before = e.state;
        begin_rotation(e.state, make_version_id(now, static_cast<std::uint32_t>(rng() & 0xffffffu)),
                       reason, round, now);
        if (auto failed = persist(e, std::move(before))) {
            ++e.failures;
            e.next_at = now + backoff_delay(e.spec->backoff, e.failures, random01());
            services.log(LogLevel::error,
                         "secret \"" + id_of(e) + "\": cannot start a rotation: " + *failed);
            return false;
        }
        e.next_start = NextStart::none;
        Event ev = make_event(EventType::rotation_started, e, now);
        ev.rotation_version = e.state.rotation->version;
        ev.reason = reason;
        events.push_back(std::move(ev));
        return true;
    }

    Launch prepare(Entry &e, TimePoint now) {
        const RotationStep step = *next_step(e.state);
        const HookSpec &hook = e.spec->hook_for(static_cast<int>(step));
        const Duration timeout = e.spec->hook_timeout.value_or(services.hook_timeout);

        e.in_flight = true;
        e.step = step;
        ++in_flight;
        e.token = completions::open(owner.weak_from_this(), e.slot, CompletionKind::step);
        e.in_flight_deadline = now + timeout + (hook.type == "exec" ? kExecGrace : Duration{});

        Launch l;
        l.secret = id_of(e);
        l.step = step;
        l.hook = hook;
        l.callback = e.callbacks[static_cast<int>(step)];
        l.token = e.token;
        l.timeout = timeout;
        StepRequest request;
        request.secret = id_of(e);
        request.step = step;
        request.version = e.state.rotation->version;
        request.attempt = e.state.rotation->failures + 1;
        request.state = &e.state;
        request.metadata = &e.spec->metadata;
        write_step_request(l.request, request);
        if (hook.type == "exec") l.redact = values_of(e.state);
        return l;
    }

    // Runs outside the mutex.
    void run(Launch &l) {
        const std::string where = "secret \"" + l.secret + "\": " + l.hook.describe() +
                                  " (step \"" + step_name(l.step) + "\")";
        if (l.hook.type != "exec") {
            int rc = 0;
            std::string why;
            try {
                rc = l.callback ? l.callback(l.request.str(), l.token) : -1;
                if (!l.callback) why = "the hook is not registered";
            } catch (const std::exception &ex) {
                rc = -1;
                why = std::string("the hook threw: ") + ex.what();
            } catch (...) {
                rc = -1;
                why = "the hook threw an exception";
            }
            if (rc != 0) {
                if (why.empty())
                    why = "the hook returned " + std::to_string(rc) + " without an answer";
                (void)completions::complete(l.token, StepOutcome(StepFailure{why, std::nullopt}));
            }
            return;
        }

        ExecCommand command;
        command.argv = l.hook.command;
        command.env = l.hook.env;
        command.timeout = l.timeout;
        auto log = services.log;
        const RotationStep step = l.step;
        const std::uint64_t token = l.token;
        ExecCommand described = command;
        run_exec(
            *services.io, std::move(command), std::move(l.request), std::move(l.redact),
            [log, where](std::string line) { log(LogLevel::warning, where + ": " + line); },
            [token, step, described = std::move(described), hook = l.hook](ExecResult result) {
                StepOutcome outcome = StepFailure{};
                if (result.end == ExecResult::End::exited && result.exit_code == 0) {
                    try {
                        outcome = parse_step_result(result.output.str(), step);
                    } catch (const Error &ex) {
                        outcome =
                            StepFailure{hook.describe() + " (step \"" + step_name(step) +
                                            "\"): answered with an invalid result: " + ex.what(),
                                        std::nullopt};
                    }
                } else {
                    outcome = StepFailure{describe_exec_failure(described, step_name(step), result),
                                          std::nullopt};
                }
                (void)completions::complete(token, std::move(outcome));
            });
    }

    void finish_flight(Entry &e) {
        e.in_flight = false;
        e.token = 0;
        if (--in_flight == 0) drained.notify_all();
    }

    // Records a failed step, journals it and schedules the retry. Mutex held.
    void apply_failure(Entry &e, RotationStep step, std::string reason,
                       std::optional<Duration> retry_after, TimePoint now,
                       std::vector<Event> &events) {
        scrub_all(reason, e.state);
        const std::string version = e.state.rotation->version;
        const int round = e.state.rotation->round;
        SecretState before = e.state;
        const AfterFailure after = record_failure(e.state, step, reason, now, e.spec->max_attempts);
        const int attempt = after == AfterFailure::abandoned ? before.rotation->failures + 1
                                                             : e.state.rotation->failures;
        if (auto failed = persist(e, std::move(before))) {
            // The failure is not journaled; the step will simply run again.
            services.log(LogLevel::error, "secret \"" + id_of(e) + "\": " + *failed);
        }
        ++e.failures;
        TimePoint retry = now + backoff_delay(e.spec->backoff, e.failures, random01());
        if (retry_after) retry = std::max(retry, now + *retry_after);
        e.next_at = retry;

        Event ev = make_event(after == AfterFailure::abandoned ? EventType::rotation_abandoned
                                                               : EventType::rotation_failed,
                              e, now);
        ev.rotation_version = version;
        ev.step = step_name(step);
        ev.error = reason;
        ev.attempt = attempt;
        ev.retry_at = retry;
        events.push_back(std::move(ev));
        if (after == AfterFailure::abandoned && !e.state.rotation) {
            e.next_start = NextStart::restart;
            e.restart_round = round + 1;
        }
    }

    Status complete(std::uint32_t slot, std::uint64_t token, StepOutcome &&outcome) {
        std::vector<Event> events;
        Status status = Status::ok;
        {
            std::lock_guard lock(mutex);
            if (slot >= slots.size() || !slots[slot] || !slots[slot]->in_flight ||
                slots[slot]->token != token) {
                return Status::stale_completion;
            }
            Entry &e = *slots[slot];
            const RotationStep step = e.step;
            finish_flight(e);
            const TimePoint now = services.clock->now();

            if (auto *success = std::get_if<StepSuccess>(&outcome);
                success && success->value && step != RotationStep::create) {
                // Only create produces a value; a hook that answers another step with
                // one has confused its steps, and nothing it did can be trusted.
                outcome = StepFailure{std::string("the hook answered step \"") + step_name(step) +
                                          "\" with a value; only \"create\" produces one",
                                      std::nullopt};
                status = Status::config;
            }
            if (auto *success = std::get_if<StepSuccess>(&outcome)) {
                SecretState before = e.state;
                const std::string version = e.state.rotation->version;
                std::optional<std::string> failed;
                try {
                    record_success(e.state, step, std::move(success->value), now,
                                   e.spec->keep_versions);
                    failed = persist(e, std::move(before));
                } catch (const Error &ex) {
                    e.state = std::move(before);
                    failed = ex.what();
                    status = ex.status();
                }
                if (failed) {
                    if (status == Status::ok) status = Status::store;
                    apply_failure(e, step, *failed, std::nullopt, now, events);
                } else {
                    Event ev = make_event(EventType::rotation_step, e, now);
                    ev.rotation_version = version;
                    ev.step = step_name(step);
                    events.push_back(std::move(ev));
                    if (!e.state.rotation) {
                        e.failures = 0;
                        schedule_after_finish(e, now);
                        Event done = make_event(EventType::rotated, e, now);
                        done.rotation_version = version;
                        done.fingerprint = e.state.current->value.fingerprint();
                        done.next_rotation_at = maybe(e.next_at);
                        events.push_back(std::move(done));
                    } else {
                        e.next_at = now;  // the next step runs at once
                    }
                }
            } else {
                auto &failure = std::get<StepFailure>(outcome);
                apply_failure(e, step, std::move(failure.reason), failure.retry_after, now, events);
            }
            reschedule(e);
            rearm();
        }
        services.emit(std::move(events));
        if (manual) return status;
        // The next step starts from the io_context, not from within the hook's call.
        asio::post(*services.io, [weak = owner.weak_from_this()] {
            if (auto self = weak.lock()) self->process_due();
        });
        return status;
    }

    void process_due() {
        std::vector<Launch> launches;
        std::vector<Event> events;
        {
            std::lock_guard lock(mutex);
            armed_at.reset();
            if (!started || stopping) return;
            const TimePoint now = services.clock->now();
            while (auto slot = queue.pop_due(now)) {
                Entry &e = *slots[*slot];
                if (e.in_flight) {
                    if (now >= e.in_flight_deadline && completions::withdraw(e.token)) {
                        const RotationStep step = e.step;
                        finish_flight(e);
                        const Duration timeout =
                            e.spec->hook_timeout.value_or(services.hook_timeout);
                        char seconds[32];
                        std::snprintf(seconds, sizeof seconds, "%.3gs", to_seconds(timeout));
                        apply_failure(e, step,
                                      e.spec->hook_for(static_cast<int>(step)).describe() +
                                          " did not answer within " + seconds,
                                      std::nullopt, now, events);
                    }
                } else if (now >= e.next_at) {
                    act(e, now, launches, events);
                }
                reschedule(e);
            }
            rearm();
        }
        services.emit(std::move(events));
        for (Launch &l : launches)
            run(l);
    }

    json::object status_of(const Entry &e) const {
        const SecretState &s = e.state;
        json::object o;
        o["id"] = id_of(e);
        const char *state = "idle";
        if (!s.current && !s.rotation) {
            state = "no_value";
        } else if (s.rotation) {
            state = s.rotation->failures > 0 ? "failing" : "rotating";
        }
        o["state"] = state;
        o["store"] = e.store->describe();
        auto version = [](const SecretVersion *v) -> json::value {
            if (v == nullptr) return nullptr;
            return json::object{{"version", v->id},
                                {"fingerprint", v->value.fingerprint()},
                                {"created_at", to_unix_seconds(v->created_at)}};
        };
        o["current"] = version(s.current ? &*s.current : nullptr);
        o["previous"] = version(s.previous());
        o["pending"] = version(s.pending ? &*s.pending : nullptr);
        if (s.rotation) {
            o["rotation"] = json::object{{"version", s.rotation->version},
                                         {"stage", stage_name(s.rotation->stage)},
                                         {"next_step", step_name(*next_step(s))},
                                         {"reason", s.rotation->reason},
                                         {"round", s.rotation->round},
                                         {"failures", s.rotation->failures},
                                         {"started_at", to_unix_seconds(s.rotation->started_at)}};
        } else {
            o["rotation"] = nullptr;
        }
        o["in_flight"] = e.in_flight ? json::value(step_name(e.step)) : json::value(nullptr);
        if (started && !e.in_flight && e.next_at != kNever) {
            o["next_at"] = to_unix_seconds(e.next_at);
        } else {
            o["next_at"] = nullptr;
        }
        o["last_rotated"] =
            s.last_rotated ? json::value(to_unix_seconds(*s.last_rotated)) : json::value(nullptr);
        o["rotations"] = s.rotations;
        std::string last_error;
        for (auto it = s.journal.rbegin(); it != s.journal.rend(); ++it) {
            if (it->transition == "finished") break;
            if (it->transition == "failed") {
                last_error = it->detail;
                break;
            }
        }
        o["last_error"] = last_error;
        json::array journal;
        const std::size_t from = s.journal.size() > 8 ? s.journal.size() - 8 : 0;
        for (std::size_t i = from; i < s.journal.size(); ++i) {
            const JournalEntry &j = s.journal[i];
            json::object jo{{"time", to_unix_seconds(j.time)},
                            {"version", j.version},
                            {"transition", j.transition}};
            if (!j.detail.empty()) jo["detail"] = j.detail;
            journal.push_back(std::move(jo));
        }
        o["journal"] = std::move(journal);
        return o;
    }

    void resolve(Entry &e) {
        for (int step = 0; step < 4; ++step) {
            const HookSpec &hook = e.spec->hook_for(step);
            if (hook.type != "hook") continue;
            try {
                e.callbacks[step] = services.find_hook(hook.name);
            } catch (const Error &ex) {
                throw Error(ex.status(), "secret \"" + id_of(e) + "\" (step \"" +
                                             step_name(static_cast<RotationStep>(step)) +
                                             "\"): " + ex.what());
            }
        }
    }
};

Rotator::Rotator(Services services) : impl_(std::make_unique<Impl>(*this, std::move(services))) {}

Rotator::~Rotator() {
    for (auto &e : impl_->slots) {
        if (e && e->in_flight) completions::withdraw(e->token);
    }
}

void Rotator::add(SecretSpec spec) {
    if (auto why = check_identifier(spec.id)) {
        throw Error(Status::invalid_argument, "secret id " + *why);
    }
    auto e = std::make_unique<Entry>();
    if (spec.store.kind == StoreSpec::Kind::file) {
        e->store = std::make_unique<FileSecretStore>(spec.store.path);
    } else if (spec.store.kind == StoreSpec::Kind::vault_kv && spec.store.vault_kv) {
        e->store = std::make_unique<VaultKvSecretStore>(spec.store.vault_kv, impl_->services.log);
    } else {
        e->store = std::make_unique<MemorySecretStore>();
    }
    const std::string prefix = "secret \"" + spec.id + "\": ";
    try {
        if (auto stored = e->store->load()) e->state = std::move(*stored);
        if (!e->state.current && !e->state.rotation && !spec.seed_file.empty()) {
            std::optional<ScrubbedString> text = read_private_file(spec.seed_file);
            if (!text) {
                throw Error(Status::not_found,
                            "the seed file " + spec.seed_file + " does not exist");
            }
            std::string &value = text->str();
            // A file written by an editor or `echo` ends with a newline that is not
            // part of the value.
            if (!value.empty() && value.back() == '\n') value.pop_back();
            if (!value.empty() && value.back() == '\r') value.pop_back();
            if (value.empty())
                throw Error(Status::config, "the seed file " + spec.seed_file + " is empty");
            const TimePoint now = impl_->services.clock->now();
            std::uint32_t random;
            {
                std::lock_guard lock(impl_->mutex);
                random = static_cast<std::uint32_t>(impl_->rng());
            }
            keyturn::seed(e->state, make_version_id(now, random), SecretBytes(value), now);
            e->store->persist(e->state);
        }
    } catch (const Error &ex) {
        throw Error(ex.status(), prefix + ex.what());
    }
    e->spec = std::make_shared<const SecretSpec>(std::move(spec));

    std::vector<Event> events;
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->by_id.count(e->spec->id) != 0) {
            throw Error(Status::exists, "secret \"" + e->spec->id + "\" already exists");
        }
        if (impl_->started) impl_->resolve(*e);
        DeadlineQueue::Slot slot;
        if (impl_->free_slots.empty()) {
            slot = static_cast<DeadlineQueue::Slot>(impl_->slots.size());
            impl_->slots.push_back(nullptr);
        } else {
            slot = impl_->free_slots.back();
            impl_->free_slots.pop_back();
        }
        e->slot = slot;
        Entry &entry = *e;
        impl_->by_id.emplace(entry.spec->id, slot);
        impl_->slots[slot] = std::move(e);
        if (impl_->started) {
            impl_->schedule_first(entry, impl_->services.clock->now());
            impl_->rearm();
        }
    }
}

void Rotator::remove(std::string_view id) {
    std::vector<Event> events;
    {
        std::lock_guard lock(impl_->mutex);
        Entry &e = impl_->lookup(id);
        if (e.in_flight) {
            completions::withdraw(e.token);
            impl_->finish_flight(e);
        }
        impl_->queue.cancel(e.slot);
        events.push_back(impl_->make_event(EventType::removed, e, impl_->services.clock->now()));
        const DeadlineQueue::Slot slot = e.slot;
        impl_->by_id.erase(impl_->by_id.find(id));
        impl_->slots[slot].reset();
        impl_->free_slots.push_back(slot);
        impl_->rearm();
    }
    impl_->services.emit(std::move(events));
}

std::string Rotator::rotate_now(std::string_view id) {
    std::vector<Event> events;
    std::string version;
    {
        std::lock_guard lock(impl_->mutex);
        Entry &e = impl_->lookup(id);
        if (!impl_->started || impl_->stopping) {
            throw Error(Status::state, "secret \"" + std::string(id) +
                                           "\": cannot rotate: the engine is not running");
        }
        const TimePoint now = impl_->services.clock->now();
        if (!e.state.rotation) {
            const int round = e.next_start == NextStart::restart ? e.restart_round : 1;
            if (!impl_->start_rotation(e, "manual", round, now, events)) {
                throw Error(Status::store, "secret \"" + std::string(id) +
                                               "\": the start of the rotation could not be "
                                               "journaled; see the log");
            }
        }
        version = e.state.rotation->version;
        if (!e.in_flight) {
            e.next_at = now;
            impl_->reschedule(e);
            impl_->rearm();
        }
    }
    impl_->services.emit(std::move(events));
    return version;
}

void Rotator::seed(std::string_view id, SecretBytes value) {
    std::lock_guard lock(impl_->mutex);
    Entry &e = impl_->lookup(id);
    if (e.state.current || e.state.rotation) {
        throw Error(Status::state, "secret \"" + std::string(id) + "\" already has a value");
    }
    const TimePoint now = impl_->services.clock->now();
    SecretState before = e.state;
    keyturn::seed(e.state, make_version_id(now, static_cast<std::uint32_t>(impl_->rng())),
                  std::move(value), now);
    if (auto failed = impl_->persist(e, std::move(before))) {
        throw Error(Status::store, "secret \"" + std::string(id) + "\": " + *failed);
    }
    if (impl_->started) impl_->schedule_first(e, now);
    impl_->rearm();
}

SecretBytes Rotator::read(std::string_view id, std::string_view label) const {
    auto name = normalise_label(label);
    if (!name) {
        throw Error(Status::invalid_argument, "label must be CURRENT, PREVIOUS or PENDING, not \"" +
                                                  std::string(label.substr(0, 32)) + "\"");
    }
    std::lock_guard lock(impl_->mutex);
    const Entry &e = impl_->lookup(id);
    const SecretVersion *v = labelled(e.state, *name);
    if (v == nullptr) {
        throw Error(Status::not_ready,
                    "secret \"" + std::string(id) + "\" has no " + *name + " value");
    }
    return v->value;
}

std::string Rotator::version_of(std::string_view id, std::string_view label) const {
    auto name = normalise_label(label);
    if (!name) throw Error(Status::invalid_argument, "label must be CURRENT, PREVIOUS or PENDING");
    std::lock_guard lock(impl_->mutex);
    const SecretVersion *v = labelled(impl_->lookup(id).state, *name);
    return v ? v->id : std::string();
}

std::string Rotator::status_json(std::string_view id) const {
    std::lock_guard lock(impl_->mutex);
    return json::serialize(impl_->status_of(impl_->lookup(id)));
}

std::string Rotator::status_json() const {
    std::lock_guard lock(impl_->mutex);
    json::array all;
    for (const auto &[id, slot] : impl_->by_id)
        all.push_back(impl_->status_of(*impl_->slots[slot]));
    return json::serialize(all);
}

std::size_t Rotator::size() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->by_id.size();
}

std::vector<std::string> Rotator::ids() const {
    std::lock_guard lock(impl_->mutex);
    std::vector<std::string> out;
    for (const auto &[id, slot] : impl_->by_id)
        out.push_back(id);
    return out;
}

void Rotator::start() {
    std::lock_guard lock(impl_->mutex);
    if (impl_->started) return;
    for (auto &e : impl_->slots)
        if (e) impl_->resolve(*e);
    impl_->started = true;
    impl_->stopping = false;
    const TimePoint now = impl_->services.clock->now();
    for (auto &e : impl_->slots)
        if (e) impl_->schedule_first(*e, now);
    impl_->rearm();
}

void Rotator::begin_stop() {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    impl_->armed_at.reset();
    impl_->timer.cancel();
}

std::size_t Rotator::wait_drained(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(impl_->mutex);
    impl_->drained.wait_until(lock, deadline, [this] { return impl_->in_flight == 0; });
    return impl_->in_flight;
}

void Rotator::end_stop() {
    std::lock_guard lock(impl_->mutex);
    impl_->started = false;
    impl_->stopping = false;
    impl_->armed_at.reset();
    impl_->timer.cancel();
}

void Rotator::process_due() {
    impl_->process_due();
}

Status Rotator::on_step_outcome(std::uint32_t slot, std::uint64_t token, StepOutcome &&outcome) {
    return impl_->complete(slot, token, std::move(outcome));
}

}  // namespace keyturn
