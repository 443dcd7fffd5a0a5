#include "core/rotation.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <sys/stat.h>

#include "core/engine.hpp"
#include "core/hook_provider.hpp"
#include "core/status.hpp"
#include "core/step_hook.hpp"
#include "core/store.hpp"

namespace keyturn {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kMarker = "SENTINEL";
const TimePoint kT0 = TimePoint(std::chrono::seconds(1'800'000'000));

// A JSON value as text: strings unquoted, anything else serialized.
std::string S(const json::value &v) {
    return v.is_string() ? std::string(v.get_string()) : json::serialize(v);
}

std::string value(int n) {
    return "kt-secret-SENTINEL-rotated-" + std::to_string(n);
}

// --- the pure model ------------------------------------------------------------

SecretState seeded() {
    SecretState s;
    seed(s, "v0", SecretBytes(value(0)), kT0);
    return s;
}

TEST(RotationModel, FourStepsPromotePendingAndKeepPrevious) {
    SecretState s = seeded();
    EXPECT_EQ(next_step(s), std::nullopt);
    begin_rotation(s, "v1", "manual", 1, kT0);
    EXPECT_EQ(next_step(s), RotationStep::create);
    record_success(s, RotationStep::create, SecretBytes(value(1)), kT0, 1);
    ASSERT_TRUE(s.pending);
    EXPECT_EQ(s.pending->id, "v1");
    EXPECT_EQ(s.current->id, "v0");  // CURRENT untouched until finish
    EXPECT_EQ(next_step(s), RotationStep::set);
    record_success(s, RotationStep::set, std::nullopt, kT0, 1);
    record_success(s, RotationStep::test, std::nullopt, kT0, 1);
    EXPECT_EQ(next_step(s), RotationStep::finish);
    record_success(s, RotationStep::finish, std::nullopt, kT0 + 1s, 1);
    EXPECT_EQ(s.current->id, "v1");
    EXPECT_EQ(s.current->value.reveal(), value(1));
    ASSERT_NE(s.previous(), nullptr);
    EXPECT_EQ(s.previous()->id, "v0");
    EXPECT_FALSE(s.pending);
    EXPECT_FALSE(s.rotation);
    EXPECT_EQ(s.rotations, 1u);
    EXPECT_EQ(s.last_rotated, kT0 + 1s);
    std::vector<std::string> transitions;
    for (const auto &e : s.journal)
        transitions.push_back(e.transition);
    EXPECT_EQ(transitions, (std::vector<std::string>{"seeded", "started", "created", "set",
                                                     "tested", "finished"}));
}

void rotate_once(SecretState &s, const std::string &id, int n, int keep) {
    begin_rotation(s, id, "scheduled", 1, kT0);
    record_success(s, RotationStep::create, SecretBytes(value(n)), kT0, keep);
    record_success(s, RotationStep::set, std::nullopt, kT0, keep);
    record_success(s, RotationStep::test, std::nullopt, kT0, keep);
    record_success(s, RotationStep::finish, std::nullopt, kT0, keep);
}

TEST(RotationModel, OlderVersionsBeyondTheKeepCountAreErased) {
    SecretState s = seeded();
    for (int n = 1; n <= 4; ++n)
        rotate_once(s, "v" + std::to_string(n), n, 2);
    EXPECT_EQ(s.current->id, "v4");
    ASSERT_EQ(s.past.size(), 2u);
    EXPECT_EQ(s.past[0].id, "v3");
    EXPECT_EQ(s.past[1].id, "v2");
    EXPECT_EQ(find_version(s, "v1"), nullptr);
    EXPECT_EQ(find_version(s, "v0"), nullptr);

    rotate_once(s, "v5", 5, 0);
    EXPECT_TRUE(s.past.empty());
    EXPECT_EQ(s.previous(), nullptr);
}

TEST(RotationModel, StepsOutOfOrderAreRefused) {
    SecretState s = seeded();
    EXPECT_THROW(record_success(s, RotationStep::create, SecretBytes(value(1)), kT0, 1), Error);
    begin_rotation(s, "v1", "manual", 1, kT0);
    EXPECT_THROW(begin_rotation(s, "v2", "manual", 1, kT0), Error);
    EXPECT_THROW(record_success(s, RotationStep::set, std::nullopt, kT0, 1), Error);
    try {
        record_success(s, RotationStep::finish, std::nullopt, kT0, 1);
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::state);
        EXPECT_NE(std::string(e.what()).find("stage \"started\""), std::string::npos) << e.what();
    }
    // create without a value is refused and changes nothing.
    EXPECT_THROW(record_success(s, RotationStep::create, std::nullopt, kT0, 1), Error);
    EXPECT_EQ(next_step(s), RotationStep::create);
}

TEST(RotationModel, AFailedTestLeavesCurrentAndRepeatedFailuresAbandonTheVersion) {
    SecretState s = seeded();
    begin_rotation(s, "v1", "scheduled", 1, kT0);
    record_success(s, RotationStep::create, SecretBytes(value(1)), kT0, 1);
    record_success(s, RotationStep::set, std::nullopt, kT0, 1);
    EXPECT_EQ(record_failure(s, RotationStep::test, "login refused", kT0, 3), AfterFailure::retry);
    EXPECT_EQ(s.current->id, "v0");
    EXPECT_EQ(next_step(s), RotationStep::test);  // the same step again
    EXPECT_EQ(record_failure(s, RotationStep::test, "login refused", kT0, 3), AfterFailure::retry);
    EXPECT_EQ(record_failure(s, RotationStep::test, "login refused", kT0, 3),
              AfterFailure::abandoned);
    EXPECT_FALSE(s.rotation);
    EXPECT_FALSE(s.pending);
    EXPECT_EQ(s.current->id, "v0");
    // The abandoned value is kept: set may have applied it.
    ASSERT_EQ(s.abandoned.size(), 1u);
    EXPECT_EQ(s.abandoned[0].id, "v1");
    EXPECT_EQ(s.journal.back().transition, "abandoned");

    // The next round gets a new version and, once it finishes, the abandoned value
    // is erased.
    begin_rotation(s, "v2", "restart", 2, kT0);
    EXPECT_EQ(s.rotation->round, 2);
    record_success(s, RotationStep::create, SecretBytes(value(2)), kT0, 1);
    record_success(s, RotationStep::set, std::nullopt, kT0, 1);
    record_success(s, RotationStep::test, std::nullopt, kT0, 1);
    record_success(s, RotationStep::finish, std::nullopt, kT0, 1);
    EXPECT_TRUE(s.abandoned.empty());
    EXPECT_EQ(s.current->id, "v2");
}

TEST(RotationModel, VersionIdsCarryTheUtcTimeAndRandomDigits) {
    EXPECT_EQ(make_version_id(TimePoint(std::chrono::seconds(1'796'310'181)), 0x3f9a1c),
              "20261203T150301Z-3f9a1c");
    EXPECT_NE(make_version_id(kT0, 1), make_version_id(kT0, 2));
}

TEST(RotationStore, EncodeAndDecodeRoundTripWithBinaryValues) {
    SecretState s = seeded();
    rotate_once(s, "v1", 1, 1);
    begin_rotation(s, "v2", "manual", 1, kT0);
    const std::string binary("\x00\xff\x01kt-secret-SENTINEL", 21);
    record_success(s, RotationStep::create, SecretBytes(binary), kT0, 1);
    ASSERT_EQ(record_failure(s, RotationStep::set, "target unreachable", kT0, 5),
              AfterFailure::retry);

    ScrubbedString text;
    encode_secret_state(text, s);
    SecretState back = decode_secret_state(text.str(), "test");
    EXPECT_EQ(back.current->id, "v1");
    EXPECT_EQ(back.current->value.reveal(), value(1));
    EXPECT_EQ(back.previous()->id, "v0");
    EXPECT_EQ(back.pending->value.reveal(), binary);
    ASSERT_TRUE(back.rotation);
    EXPECT_EQ(back.rotation->version, "v2");
    EXPECT_EQ(back.rotation->stage, RotationStage::created);
    EXPECT_EQ(back.rotation->failures, 1);
    EXPECT_EQ(back.rotation->last_error, "target unreachable");
    EXPECT_EQ(back.rotations, 1u);
    EXPECT_EQ(back.journal.size(), s.journal.size());
    EXPECT_EQ(next_step(back), RotationStep::set);
}

TEST(RotationStore, MalformedDocumentsNameTheField) {
    auto error_of = [](std::string_view text) {
        try {
            decode_secret_state(text, "file store /x");
        } catch (const Error &e) {
            EXPECT_EQ(e.status(), Status::store);
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(error_of("[1]").find("expected an object"), std::string::npos);
    EXPECT_NE(error_of(R"({"format":"other"})").find("format"), std::string::npos);
    EXPECT_NE(error_of(R"({"format":"keyturn-secret-1","current":{"id":"v","created_at":1}})")
                  .find("current.value"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"format":"keyturn-secret-1","rotation":{"version":"v1","stage":"set",
                           "reason":"x","started_at":1,"failures":0,"round":1}})")
                  .find("without a PENDING value"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"format":"keyturn-secret-1","rotation":{"version":"v1","stage":"bogus",
                           "reason":"x","started_at":1,"failures":0,"round":1}})")
                  .find("rotation.stage"),
              std::string::npos);
    EXPECT_NE(error_of("{not json").find("file store /x"), std::string::npos);
}

TEST(StepDocuments, RequestCarriesLabelsAndResultsAreChecked) {
    SecretState s = seeded();
    rotate_once(s, "v1", 1, 1);
    begin_rotation(s, "v2", "manual", 1, kT0);
    record_success(s, RotationStep::create, SecretBytes(value(2)), kT0, 1);
    Metadata meta{{"role", "app"}};
    StepRequest r{"db", RotationStep::set, "v2", 1, &s, &meta};
    ScrubbedString text;
    write_step_request(text, r);
    json::value doc = json::parse(text.str());
    EXPECT_EQ(S(doc.at("step")), "set");
    EXPECT_EQ(S(doc.at("version")), "v2");
    EXPECT_EQ(S(doc.at("current").at("version")), "v1");
    EXPECT_EQ(S(doc.at("previous").at("version")), "v0");
    EXPECT_EQ(S(doc.at("pending").at("value")), value(2));
    EXPECT_EQ(S(doc.at("metadata").at("role")), "app");

    auto created = parse_step_result(R"({"value":"abc"})", RotationStep::create);
    ASSERT_TRUE(std::holds_alternative<StepSuccess>(created));
    EXPECT_EQ(std::get<StepSuccess>(created).value->reveal(), "abc");
    EXPECT_THROW(parse_step_result("{}", RotationStep::create), Error);
    EXPECT_THROW(parse_step_result(R"({"value":""})", RotationStep::create), Error);
    EXPECT_THROW(parse_step_result(R"({"value":"x"})", RotationStep::set), Error);
    EXPECT_THROW(parse_step_result("nope", RotationStep::set), Error);
    EXPECT_THROW(parse_step_result("[]", RotationStep::set), Error);
    auto failed = parse_step_result(R"({"error":"no route","retry_after":7})", RotationStep::test);
    ASSERT_TRUE(std::holds_alternative<StepFailure>(failed));
    EXPECT_EQ(std::get<StepFailure>(failed).reason, "no route");
    EXPECT_EQ(std::get<StepFailure>(failed).retry_after, std::chrono::seconds(7));
    try {
        parse_step_result(R"({"value":"kt-secret-SENTINEL-x","extra":1})", RotationStep::create);
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()).find(kMarker), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("extra"), std::string::npos);
    }
}

// --- the rotator, through the engine, on a manual clock ---------------------------

class TempDir {
  public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "keyturn-rot-XXXXXX").string();
        path_ = ::mkdtemp(pattern.data());
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path &path() const { return path_; }

  private:
    fs::path path_;
};

// A step hook whose answers the test scripts. It records every request.
class StepScript {
  public:
    struct Call {
        std::string step;
        std::string version;
        std::string current;
        std::string pending;
        int attempt;
        std::uint64_t token;
    };

    // What to answer: nothing (the test answers later), or an outcome.
    std::function<std::optional<StepOutcome>(const Call &)> answer;

    HookProvider::Function function() {
        return [this](std::string_view request, std::uint64_t token) {
            json::value doc = json::parse(request);
            Call call;
            call.step = std::string(doc.at("step").as_string());
            call.version = std::string(doc.at("version").as_string());
            if (doc.at("current").is_object()) {
                call.current = std::string(doc.at("current").at("value").as_string());
            }
            if (doc.at("pending").is_object()) {
                call.pending = std::string(doc.at("pending").at("value").as_string());
            }
            call.attempt = static_cast<int>(doc.at("attempt").as_int64());
            call.token = token;
            std::optional<StepOutcome> outcome;
            {
                std::lock_guard lock(mutex_);
                calls_.push_back(call);
                if (answer) outcome = answer(call);
            }
            if (outcome) completions::complete(token, std::move(*outcome));
            return 0;
        };
    }

    std::vector<Call> calls() const {
        std::lock_guard lock(mutex_);
        return calls_;
    }
    std::vector<std::string> steps() const {
        std::vector<std::string> out;
        for (const auto &c : calls())
            out.push_back(c.step);
        return out;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<Call> calls_;
};

StepOutcome ok(const StepScript::Call &call, int *counter) {
    if (call.step == "create") return StepSuccess{SecretBytes(value(++*counter))};
    return StepSuccess{};
}

struct Harness {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(kT0);
    std::unique_ptr<Engine> engine;
    StepScript script;
    std::mutex mutex;
    std::vector<Event> events;
    std::vector<std::string> logs;

    Harness() { make(); }

    void make() {
        EngineSettings settings;
        settings.drain_timeout = Duration::zero();  // "killed" engines do not wait
        engine = std::make_unique<Engine>(settings, clock);
        engine->add_provider("steps", std::make_shared<HookProvider>(script.function()));
        engine->subscribe([this](const Event &e) {
            std::lock_guard lock(mutex);
            events.push_back(e);
        });
        engine->set_logger(LogLevel::debug, [this](LogLevel, const std::string &line) {
            std::lock_guard lock(mutex);
            logs.push_back(line);
        });
    }

    std::vector<std::string> event_types() {
        std::lock_guard lock(mutex);
        std::vector<std::string> out;
        for (const auto &e : events)
            if (e.secret) out.push_back(event_type_name(e.type));
        return out;
    }

    void settle() {
        for (int i = 0; i < 50 && engine->poll() != 0; ++i) {
        }
    }

    void expect_no_secret_leaked() {
        std::lock_guard lock(mutex);
        for (const auto &e : events)
            EXPECT_EQ(e.to_json().find(kMarker), std::string::npos) << e.to_json();
        for (const auto &l : logs)
            EXPECT_EQ(l.find(kMarker), std::string::npos) << l;
    }
};

SecretSpec spec_for(const fs::path &store, int max_attempts = 5) {
    SecretSpec spec;
    spec.id = "db";
    spec.hook = HookSpec{"hook", "steps", {}, {}};
    if (!store.empty()) {
        spec.store.kind = StoreSpec::Kind::file;
        spec.store.path = store.string();
    }
    spec.max_attempts = max_attempts;
    spec.backoff = BackoffPolicy{1s, 2.0, 60s, 0.0};
    spec.metadata = {{"role", "app"}};
    return spec;
}

TEST(Rotator, ASecretWithoutValueRotatesAtStartThroughFourSteps) {
    Harness h;
    int created = 0;
    h.script.answer = [&](const StepScript::Call &c) { return ok(c, &created); };
    h.engine->add_secret(spec_for({}));
    h.engine->start();
    h.settle();
    EXPECT_EQ(h.script.steps(), (std::vector<std::string>{"create", "set", "test", "finish"}));
    std::string version;
    EXPECT_EQ(h.engine->read_secret("db", "current", &version).reveal(), value(1));
    EXPECT_EQ(h.script.calls()[0].version, version);
    EXPECT_EQ(h.script.calls()[0].current, "");  // no CURRENT yet
    EXPECT_EQ(h.script.calls()[1].pending, value(1));
    EXPECT_EQ(h.event_types(),
              (std::vector<std::string>{"rotation_started", "rotation_step", "rotation_step",
                                        "rotation_step", "rotation_step", "rotated"}));
    EXPECT_THROW(h.engine->read_secret("db", "PENDING"), Error);
    h.expect_no_secret_leaked();
}

TEST(Rotator, RotateNowJoinsTheRotationInFlight) {
    Harness h;
    int created = 0;
    h.script.answer = [&](const StepScript::Call &c) -> std::optional<StepOutcome> {
        if (c.step == "set") return std::nullopt;  // the test answers later
        return ok(c, &created);
    };
    h.engine->add_secret(spec_for({}));
    h.engine->seed_secret("db", SecretBytes(value(0)));
    h.engine->start();
    h.settle();
    EXPECT_TRUE(h.script.calls().empty());  // seeded and no schedule: nothing to do

    const std::string v1 = h.engine->rotate_now("db");
    h.settle();
    EXPECT_EQ(h.engine->rotate_now("db"), v1);
    h.settle();
    EXPECT_EQ(h.script.steps(), (std::vector<std::string>{"create", "set"}));
    json::value status = json::parse(h.engine->secret_status_json("db"));
    EXPECT_EQ(S(status.at("state")), "rotating");
    EXPECT_EQ(S(status.at("in_flight")), "set");
    EXPECT_EQ(S(status.at("current").at("fingerprint")), SecretBytes(value(0)).fingerprint());

    completions::complete(h.script.calls().back().token, StepOutcome(StepSuccess{}));
    h.settle();
    EXPECT_EQ(h.script.steps(), (std::vector<std::string>{"create", "set", "test", "finish"}));
    EXPECT_EQ(h.engine->read_secret("db", "CURRENT").reveal(), value(1));
    EXPECT_EQ(h.engine->read_secret("db", "PREVIOUS").reveal(), value(0));
    // A second completion of a finished step is stale.
    EXPECT_EQ(completions::complete(h.script.calls()[1].token, StepOutcome(StepSuccess{})),
              Status::stale_completion);
    h.expect_no_secret_leaked();
}

TEST(Rotator, FailuresBackOffAndAbandonTheVersionForANewOne) {
    Harness h;
    int created = 0;
    int test_failures = 0;
    h.script.answer = [&](const StepScript::Call &c) -> std::optional<StepOutcome> {
        if (c.step == "test" && test_failures < 3) {
            ++test_failures;
            // A hook that quotes the value it was given: it must not reach events.
            return StepFailure{"login refused for " + c.pending, std::nullopt};
        }
        return ok(c, &created);
    };
    h.engine->add_secret(spec_for({}, /*max_attempts=*/2));
    h.engine->seed_secret("db", SecretBytes(value(0)));
    h.engine->start();
    const std::string v1 = h.engine->rotate_now("db");
    h.settle();
    EXPECT_EQ(h.script.steps(), (std::vector<std::string>{"create", "set", "test"}));
    EXPECT_EQ(h.engine->read_secret("db", "CURRENT").reveal(), value(0));  // untouched

    // Backoff: not before 1 s.
    h.clock->advance(900ms);
    h.settle();
    EXPECT_EQ(h.script.calls().size(), 3u);
    h.clock->advance(200ms);
    h.settle();
    // The second test failure abandons v1.
    EXPECT_EQ(h.script.steps(), (std::vector<std::string>{"create", "set", "test", "test"}));
    json::value status = json::parse(h.engine->secret_status_json("db"));
    EXPECT_TRUE(status.at("rotation").is_null());

    // After the (doubled) backoff a new round begins with a new version and value.
    h.clock->advance(2100ms);
    h.settle();
    auto calls = h.script.calls();
    ASSERT_GE(calls.size(), 5u);
    EXPECT_EQ(calls[4].step, "create");
    EXPECT_NE(calls[4].version, v1);
    h.clock->advance(10s);
    h.settle();
    h.clock->advance(10s);
    h.settle();
    EXPECT_EQ(h.engine->read_secret("db", "CURRENT").reveal(), value(2));
    auto types = h.event_types();
    EXPECT_NE(std::find(types.begin(), types.end(), "rotation_abandoned"), types.end());
    EXPECT_EQ(types.back(), "rotated");
    h.expect_no_secret_leaked();
}

TEST(Rotator, AHookThatNeverAnswersTimesOut) {
    Harness h;
    h.script.answer = [](const StepScript::Call &) { return std::nullopt; };
    SecretSpec spec = spec_for({});
    spec.hook_timeout = 5s;
    h.engine->add_secret(spec);
    h.engine->start();
    h.settle();
    ASSERT_EQ(h.script.steps(), (std::vector<std::string>{"create"}));
    h.clock->advance(5s);
    h.settle();
    json::value status = json::parse(h.engine->secret_status_json("db"));
    EXPECT_EQ(S(status.at("state")), "failing");
    EXPECT_NE(std::string(status.at("last_error").as_string()).find("did not answer within 5s"),
              std::string::npos);
    EXPECT_EQ(completions::complete(h.script.calls()[0].token,
                                    StepOutcome(StepSuccess{SecretBytes(value(9))})),
              Status::stale_completion);
}

// Kills the engine (drops it without completing the hook) after each step in turn,
// starts a new one on the same store, and checks that the rotation resumes at the
// first step not journaled, with the same version id, and never creates twice.
TEST(Rotator, AnEngineKilledAtAnyStepResumesFromTheJournal) {
    for (int kill_at = 0; kill_at < 4; ++kill_at) {
        SCOPED_TRACE("killed during step " + std::to_string(kill_at));
        TempDir dir;
        const fs::path store = dir.path() / "db.json";
        int created = 0;
        std::string version;
        {
            Harness h;
            int step_index = 0;
            h.script.answer = [&](const StepScript::Call &c) -> std::optional<StepOutcome> {
                if (step_index++ == kill_at) return std::nullopt;  // dies during this step
                return ok(c, &created);
            };
            h.engine->add_secret(spec_for(store));
            h.engine->seed_secret("db", SecretBytes(value(0)));
            h.engine->start();
            version = h.engine->rotate_now("db");
            h.settle();
            ASSERT_EQ(h.script.calls().size(), static_cast<std::size_t>(kill_at + 1));
        }
        struct stat st {};
        ASSERT_EQ(::stat(store.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u);

        Harness again;
        again.script.answer = [&](const StepScript::Call &c) { return ok(c, &created); };
        again.engine->add_secret(spec_for(store));
        again.engine->start();
        again.settle();
        const char *names[] = {"create", "set", "test", "finish"};
        std::vector<std::string> expected(names + kill_at, names + 4);
        EXPECT_EQ(again.script.steps(), expected);
        for (const auto &c : again.script.calls())
            EXPECT_EQ(c.version, version);
        EXPECT_EQ(created, 1);  // one value, ever
        EXPECT_EQ(again.engine->read_secret("db", "CURRENT").reveal(), value(1));
        EXPECT_EQ(again.engine->read_secret("db", "PREVIOUS").reveal(), value(0));
    }
}

// The journal write itself fails (a crash while writing): no step runs on an
// unjournaled transition, and the state on disk stays whole.
TEST(Rotator, AFailedJournalWriteRunsNoFurtherStep) {
    TempDir dir;
    const fs::path store = dir.path() / "db.json";
    Harness h;
    int created = 0;
    h.script.answer = [&](const StepScript::Call &c) { return ok(c, &created); };
    h.engine->add_secret(spec_for(store));
    h.engine->seed_secret("db", SecretBytes(value(0)));
    h.engine->start();
    h.settle();
    // From now on every write fails after the temporary file is written.
    FileStore::set_fault_hook_for_testing([](std::string_view step) {
        if (step == "written") throw Error(Status::store, "simulated crash");
    });
    EXPECT_THROW(h.engine->rotate_now("db"), Error);
    h.settle();
    EXPECT_TRUE(h.script.calls().empty());
    FileStore::set_fault_hook_for_testing(nullptr);

    // The created value cannot be journaled: set must not run.
    h.engine->rotate_now("db");
    FileStore::set_fault_hook_for_testing([](std::string_view step) {
        if (step == "synced") throw Error(Status::store, "simulated crash");
    });
    h.settle();
    FileStore::set_fault_hook_for_testing(nullptr);
    EXPECT_EQ(h.script.steps(), (std::vector<std::string>{"create"}));
    SecretState on_disk = *FileSecretStore(store).load();
    EXPECT_EQ(on_disk.rotation->stage, RotationStage::started);
    EXPECT_FALSE(on_disk.pending);
    EXPECT_EQ(on_disk.current->value.reveal(), value(0));
    // The retry creates again for the same version id, then goes on.
    h.clock->advance(2s);
    h.settle();
    EXPECT_EQ(h.script.steps(),
              (std::vector<std::string>{"create", "create", "set", "test", "finish"}));
    EXPECT_EQ(h.engine->read_secret("db", "CURRENT").reveal(), value(2));
}

TEST(Rotator, ScheduleEveryPeriodAndSeedFile) {
    TempDir dir;
    const fs::path seed = dir.path() / "seed";
    { std::ofstream(seed) << value(0) << "\n"; }
    fs::permissions(seed, fs::perms::owner_read | fs::perms::owner_write);
    Harness h;
    int created = 0;
    h.script.answer = [&](const StepScript::Call &c) { return ok(c, &created); };
    SecretSpec spec = spec_for(dir.path() / "db.json");
    spec.seed_file = seed.string();
    RotationSchedule every;
    every.kind = RotationSchedule::Kind::every;
    every.period = 1h;
    spec.schedule = every;
    h.engine->add_secret(spec);
    EXPECT_EQ(h.engine->read_secret("db", "CURRENT").reveal(), value(0));
    h.engine->start();
    h.settle();
    // A seeded secret that was never rotated is due at once under "every".
    EXPECT_EQ(h.script.steps().size(), 4u);
    h.clock->advance(59min);
    h.settle();
    EXPECT_EQ(h.script.steps().size(), 4u);
    h.clock->advance(2min);
    h.settle();
    EXPECT_EQ(h.script.steps().size(), 8u);
    EXPECT_EQ(h.engine->read_secret("db", "CURRENT").reveal(), value(2));
    EXPECT_EQ(h.engine->read_secret("db", "PREVIOUS").reveal(), value(1));

    // A seed file readable by others is refused.
    fs::permissions(seed, fs::perms::group_read, fs::perm_options::add);
    SecretSpec other = spec_for({});
    other.id = "other";
    other.seed_file = seed.string();
    try {
        h.engine->add_secret(other);
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("secret \"other\""), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("0600"), std::string::npos);
    }
}

TEST(Rotator, MissingHooksAndBadIdsAreClearErrors) {
    Harness h;
    SecretSpec spec = spec_for({});
    spec.hook = HookSpec{"hook", "nobody", {}, {}};
    h.engine->add_secret(spec);
    try {
        h.engine->start();
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::not_found);
        EXPECT_NE(std::string(e.what()).find("secret \"db\""), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("nobody"), std::string::npos);
    }
    EXPECT_THROW(h.engine->rotate_now("db"), Error);  // not running
    EXPECT_THROW(h.engine->rotate_now("missing"), Error);
    EXPECT_THROW(h.engine->read_secret("db", "LATEST"), Error);
    EXPECT_THROW(h.engine->add_secret(spec), Error);  // exists
    SecretSpec bad = spec_for({});
    bad.id = "bad id";
    EXPECT_THROW(h.engine->add_secret(bad), Error);
}

TEST(SecretSpecParsing, MistakesNameTheirPath) {
    auto error_of = [](std::string_view text) {
        try {
            parse_secret_spec(text);
        } catch (const Error &e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(error_of(R"({"id":"s"})").find("hook: is required"), std::string::npos);
    EXPECT_NE(error_of(R"({"id":"s","hook":{"type":"exec","command":[]}})")
                  .find("hook.command: expected a non-empty array"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"id":"s","hook":{"type":"exec","command":["/bin/x"],"env":{"1A":"x"}}})")
                  .find("hook.env.1A"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"id":"s","hooks":{"create":{"type":"hook","name":"a"}}})")
                  .find("hooks.set: is required"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"id":"s","hook":{"type":"hook","name":"a"},"keep_versions":-1})")
                  .find("keep_versions"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"id":"s","hook":{"type":"hook","name":"a"},"retry":{"max_attempts":0}})")
                  .find("retry.max_attempts"),
              std::string::npos);
    EXPECT_NE(
        error_of(R"({"id":"s","hook":{"type":"hook","name":"a"},"schedule":{"cron":"0 24 * * *"}})")
            .find("schedule.cron"),
        std::string::npos);
    EXPECT_NE(error_of(R"({"id":"s","hook":{"type":"hook","name":"a"},"color":1})").find("color"),
              std::string::npos);

    SecretSpec ok = parse_secret_spec(R"({"id":"s","hook":{"type":"hook","name":"a"},
        "hooks":{"test":{"type":"exec","command":["/bin/true"]}},
        "schedule":{"every":"30d","jitter":"1h"},"keep_versions":2})");
    EXPECT_EQ(ok.hook_for(0).name, "a");
    EXPECT_EQ(ok.hook_for(2).type, "exec");
    EXPECT_EQ(ok.keep_versions, 2);
    ASSERT_TRUE(ok.schedule);
    EXPECT_EQ(ok.schedule->period, std::chrono::hours(24 * 30));
}

}  // namespace
}  // namespace keyturn
