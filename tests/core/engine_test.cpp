#include "core/engine.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/store.hpp"

namespace keyturn {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Every secret in these tests carries this marker; no log line, event or error
// message may ever contain it.
constexpr std::string_view kMarker = "SENTINEL";

std::string token(int n) {
    return "kt-secret-SENTINEL-token-" + std::to_string(n);
}
std::string refresh_token(int n) {
    return "kt-secret-SENTINEL-refresh-" + std::to_string(n);
}

// A provider that records each request and lets the test answer it, or answers at
// once through `respond` when set.
class ScriptedProvider final : public Provider {
  public:
    struct Call {
        std::string credential;
        std::string reason;
        int attempt;
        std::optional<std::string> current;
        std::optional<std::string> refresh;
        Completion completion;
    };

    void refresh(const RefreshRequest &r, Completion completion) override {
        Call call{std::string(r.credential),
                  std::string(r.reason),
                  r.attempt,
                  r.current ? std::optional(std::string(r.current->value.reveal())) : std::nullopt,
                  r.refresh ? std::optional(std::string(r.refresh->reveal())) : std::nullopt,
                  completion};
        std::function<void(const Call &)> respond;
        {
            std::lock_guard lock(mutex_);
            calls_.push_back(call);
            respond = respond_;
        }
        if (respond) respond(call);
    }

    void set_responder(std::function<void(const Call &)> respond) {
        std::lock_guard lock(mutex_);
        respond_ = std::move(respond);
    }
    std::vector<Call> calls() const {
        std::lock_guard lock(mutex_);
        return calls_;
    }
    std::size_t count() const {
        std::lock_guard lock(mutex_);
        return calls_.size();
    }
    Call last() const {
        std::lock_guard lock(mutex_);
        return calls_.back();
    }

  private:
    mutable std::mutex mutex_;
    std::vector<Call> calls_;
    std::function<void(const Call &)> respond_;
};

RefreshSuccess success(std::string value, Duration lifetime,
                       std::optional<std::string> refresh = std::nullopt) {
    RefreshSuccess s;
    s.value = SecretBytes(std::string_view(value));
    s.expires_in = lifetime;
    if (refresh) s.refresh = SecretBytes(std::string_view(*refresh));
    return s;
}

RefreshFailure failure(std::string reason, FailureAction action = FailureAction::retry) {
    return RefreshFailure{std::move(reason), action, std::nullopt};
}

CredentialSpec spec(std::string id) {
    CredentialSpec s;
    s.id = std::move(id);
    s.provider.name = "scripted";
    s.policy.jitter = 0;
    s.policy.backoff.jitter = 0;
    return s;
}

// Nothing answers a hook in the background under the manual clock, so an engine
// destroyed with a refresh in flight need not wait for it.
EngineSettings manual_settings() {
    EngineSettings settings;
    settings.drain_timeout = Duration::zero();
    return settings;
}

CredentialSpec file_spec(std::string id, const fs::path &path) {
    CredentialSpec s = spec(std::move(id));
    s.store.kind = StoreSpec::Kind::file;
    s.store.path = path.string();
    return s;
}

struct ReadOutcome {
    Status status;
    std::string value;
    bool stale = false;
};

ReadOutcome read(const Engine &engine, std::string_view id) {
    char buf[256];
    std::size_t len = 0;
    bool stale = false;
    Status s = engine.find(id)->read(buf, sizeof buf, &len, &stale);
    return {s, s == Status::ok ? std::string(buf, len) : std::string(), stale};
}

class EngineTest : public ::testing::Test {
  protected:
    void SetUp() override {
        clock_ = std::make_shared<ManualClock>();
        engine_ = std::make_unique<Engine>(manual_settings(), clock_);
        engine_->add_provider("scripted", provider_);
        engine_->set_logger(LogLevel::debug, [this](LogLevel, const std::string &line) {
            std::lock_guard lock(mutex_);
            logs_.push_back(line);
        });
        engine_->subscribe([this](const Event &e) {
            std::lock_guard lock(mutex_);
            events_.push_back(e);
            event_json_.push_back(e.to_json());
        });
    }

    void TearDown() override {
        engine_.reset();
        std::lock_guard lock(mutex_);
        for (const auto &line : logs_)
            EXPECT_EQ(line.find(kMarker), std::string::npos) << line;
        for (const auto &json : event_json_) {
            EXPECT_EQ(json.find(kMarker), std::string::npos) << json;
        }
        fs::remove_all(dir_);
    }

    // Runs everything that is ready at the manual clock's time.
    void settle() {
        for (int i = 0; i < 1000 && engine_->poll() != 0; ++i) {
        }
    }
    void advance(Duration d) {
        clock_->advance(d);
        settle();
    }

    std::vector<Event> events_of(EventType type) {
        std::lock_guard lock(mutex_);
        std::vector<Event> out;
        for (const auto &e : events_) {
            if (e.type == type) out.push_back(e);
        }
        return out;
    }

    fs::path temp_dir() {
        dir_ = fs::temp_directory_path() /
               ("keyturn-engine-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        return dir_;
    }

    std::shared_ptr<ManualClock> clock_;
    std::shared_ptr<ScriptedProvider> provider_ = std::make_shared<ScriptedProvider>();
    std::unique_ptr<Engine> engine_;
    std::mutex mutex_;
    std::vector<std::string> logs_;
    std::vector<Event> events_;
    std::vector<std::string> event_json_;
    fs::path dir_;
};

TEST_F(EngineTest, TheFirstRefreshRunsAtStartAndItsValueIsRead) {
    engine_->add(spec("api"));
    EXPECT_EQ(read(*engine_, "api").status, Status::not_ready);
    engine_->start();
    settle();
    ASSERT_EQ(provider_->count(), 1u);
    auto call = provider_->last();
    EXPECT_EQ(call.reason, "initial");
    EXPECT_EQ(call.attempt, 1);
    EXPECT_FALSE(call.current);

    EXPECT_EQ(call.completion.complete(success(token(1), 90s)), Status::ok);
    settle();
    auto r = read(*engine_, "api");
    EXPECT_EQ(r.status, Status::ok);
    EXPECT_EQ(r.value, token(1));
    auto refreshed = events_of(EventType::refreshed);
    ASSERT_EQ(refreshed.size(), 1u);
    EXPECT_EQ(refreshed[0].version, 1u);
    EXPECT_EQ(refreshed[0].fingerprint, SecretBytes(std::string_view(token(1))).fingerprint());
}

TEST_F(EngineTest, RefreshesAgainAtTwoThirdsOfTheLifetime) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 90s));
    settle();

    advance(59s);
    EXPECT_EQ(provider_->count(), 1u);
    advance(1s);
    ASSERT_EQ(provider_->count(), 2u);
    EXPECT_EQ(provider_->last().reason, "scheduled");
    EXPECT_EQ(provider_->last().current, token(1));
    // The old value stays readable while the refresh is in flight.
    EXPECT_EQ(read(*engine_, "api").value, token(1));
    provider_->last().completion.complete(success(token(2), 90s));
    settle();
    EXPECT_EQ(read(*engine_, "api").value, token(2));
}

TEST_F(EngineTest, AnExpiredValueIsNeverReturned) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 30s));
    settle();
    advance(20s);  // the refresh starts, and its hook never answers in time
    advance(9999ms);
    EXPECT_EQ(read(*engine_, "api").status, Status::ok);
    advance(1ms);
    EXPECT_EQ(read(*engine_, "api").status, Status::expired);
    ASSERT_EQ(events_of(EventType::expired).size(), 1u);
}

TEST_F(EngineTest, ServeStaleReturnsAnExpiredValueFlaggedAsStale) {
    CredentialSpec s = spec("api");
    s.serve_stale = true;
    engine_->add(s);
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 30s));
    settle();
    advance(31s);
    auto r = read(*engine_, "api");
    EXPECT_EQ(r.status, Status::ok);
    EXPECT_EQ(r.value, token(1));
    EXPECT_TRUE(r.stale);
}

TEST_F(EngineTest, FailuresBackOffExponentially) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    // Answer the first request with a failure, then every retry likewise, and
    // record the time between attempts.
    std::vector<Duration> gaps;
    TimePoint last = clock_->now();
    for (int attempt = 1; attempt <= 5; ++attempt) {
        ASSERT_EQ(provider_->count(), static_cast<std::size_t>(attempt));
        EXPECT_EQ(provider_->last().attempt, attempt);
        provider_->last().completion.complete(failure("HTTP 503 from the token endpoint"));
        settle();
        // Step in 100 ms increments until the next attempt shows up.
        for (int i = 0; i < 1000 && provider_->count() == static_cast<std::size_t>(attempt); ++i) {
            advance(100ms);
        }
        gaps.push_back(clock_->now() - last);
        last = clock_->now();
    }
    EXPECT_EQ(gaps[0], 1s);
    EXPECT_EQ(gaps[1], 2s);
    EXPECT_EQ(gaps[2], 4s);
    EXPECT_EQ(gaps[3], 8s);
    auto failed = events_of(EventType::refresh_failed);
    ASSERT_EQ(failed.size(), 5u);
    EXPECT_EQ(failed[2].attempt, 3);
    EXPECT_EQ(failed[2].error, "HTTP 503 from the token endpoint");
    EXPECT_EQ(failed[2].retry_at, failed[2].time + 4s);
}

TEST_F(EngineTest, AHookThatNeverAnswersTimesOutAndItsLateAnswerIsRejected) {
    CredentialSpec s = spec("api");
    s.hook_timeout = 5s;
    engine_->add(s);
    engine_->start();
    settle();
    auto first = provider_->last();
    advance(5s);
    auto failed = events_of(EventType::refresh_failed);
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_NE(failed[0].error.find("did not answer within 5s"), std::string::npos)
        << failed[0].error;
    EXPECT_EQ(first.completion.complete(success(token(1), 60s)), Status::stale_completion);
    EXPECT_EQ(read(*engine_, "api").status, Status::not_ready);
    // The retry comes after the backoff and works.
    advance(1s);
    ASSERT_EQ(provider_->count(), 2u);
    EXPECT_EQ(provider_->last().reason, "retry");
    EXPECT_EQ(provider_->last().completion.complete(success(token(2), 60s)), Status::ok);
    EXPECT_EQ(read(*engine_, "api").value, token(2));
}

TEST_F(EngineTest, ASecondAnswerIsRejected) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    auto call = provider_->last();
    EXPECT_EQ(call.completion.complete(success(token(1), 60s)), Status::ok);
    EXPECT_EQ(call.completion.complete(success(token(2), 60s)), Status::stale_completion);
    EXPECT_EQ(call.completion.complete(failure("late")), Status::stale_completion);
    EXPECT_EQ(read(*engine_, "api").value, token(1));
}

TEST_F(EngineTest, GivingUpStopsRefreshesUntilRefreshNow) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    provider_->last().completion.complete(failure("account disabled", FailureAction::give_up));
    settle();
    advance(1h);
    EXPECT_EQ(provider_->count(), 1u);
    auto failed = events_of(EventType::refresh_failed);
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].action, "give_up");
    EXPECT_FALSE(failed[0].retry_at);

    engine_->refresh_now("api");
    settle();
    ASSERT_EQ(provider_->count(), 2u);
    EXPECT_EQ(provider_->last().reason, "manual");
}

TEST_F(EngineTest, RefreshMaterialIsKeptWhenOmittedAndDiscardedForALogin) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 90s, refresh_token(1)));
    advance(60s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(1));
    provider_->last().completion.complete(success(token(2), 90s));  // no new refresh token
    advance(60s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(1));

    provider_->last().completion.complete(failure("invalid_grant", FailureAction::login));
    advance(1s);
    auto call = provider_->last();
    EXPECT_EQ(call.reason, "login");
    EXPECT_FALSE(call.refresh);
    call.completion.complete(success(token(3), 90s, refresh_token(3)));
    advance(60s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(3));
    EXPECT_EQ(provider_->last().reason, "scheduled");
}

TEST_F(EngineTest, ANewRefreshTokenIsPersistedBeforeTheValueIsPublished) {
    CredentialSpec s = file_spec("api", temp_dir() / "api.json");
    engine_->add(s);
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 90s, refresh_token(1)));
    advance(60s);

    // While the file is being replaced, readers still see the old value.
    std::vector<std::string> seen_during_write;
    FileStore::set_fault_hook_for_testing([&](std::string_view step) {
        if (step == "renamed") seen_during_write.push_back(read(*engine_, "api").value);
    });
    Status status = provider_->last().completion.complete(success(token(2), 90s, refresh_token(2)));
    FileStore::set_fault_hook_for_testing(nullptr);

    EXPECT_EQ(status, Status::ok);
    EXPECT_EQ(seen_during_write, std::vector<std::string>{token(1)});
    // When complete() returned, the new refresh token was on disk.
    auto stored = FileStore(s.store.path).load();
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->refresh->reveal(), refresh_token(2));
    EXPECT_EQ(stored->value.reveal(), token(2));
    EXPECT_EQ(read(*engine_, "api").value, token(2));
}

TEST_F(EngineTest, RefreshMaterialFromAnUnusableAnswerReplacesTheOld) {
    CredentialSpec s = file_spec("api", temp_dir() / "api.json");
    engine_->add(s);
    engine_->start();
    settle();
    // No value yet: the rotated refresh token of a failed first answer is used next.
    RefreshFailure first = failure("the token had expired already");
    first.refresh = SecretBytes(std::string_view(refresh_token(1)));
    provider_->last().completion.complete(std::move(first));
    advance(1s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(1));
    EXPECT_EQ(provider_->last().reason, "retry");
    provider_->last().completion.complete(success(token(2), 90s, refresh_token(2)));
    settle();
    ASSERT_EQ(read(*engine_, "api").value, token(2));

    // With a value held: the value stays, with its version and expiry, and the new refresh
    // token is on disk beside it before the retry.
    advance(60s);
    RefreshFailure later = failure("the token had expired already");
    later.refresh = SecretBytes(std::string_view(refresh_token(3)));
    EXPECT_EQ(provider_->last().completion.complete(std::move(later)), Status::ok);
    auto stored = FileStore(s.store.path).load();
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->value.reveal(), token(2));
    EXPECT_EQ(stored->refresh->reveal(), refresh_token(3));
    EXPECT_EQ(stored->version, 1u);
    EXPECT_EQ(read(*engine_, "api").value, token(2));
    advance(1s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(3));
    ASSERT_EQ(events_of(EventType::refresh_failed).size(), 2u);
    EXPECT_EQ(events_of(EventType::refreshed).size(), 1u);
}

// An answer whose expiry has passed is not published, but the refresh token it brought is
// kept: the issuer may have rotated the old one away.
TEST_F(EngineTest, AnAnswerThatExpiredOnArrivalKeepsItsRefreshToken) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    RefreshSuccess dead = success(token(1), 90s, refresh_token(1));
    dead.expires_in.reset();
    dead.expires_at = clock_->now() - 1s;
    provider_->last().completion.complete(std::move(dead));
    settle();
    EXPECT_EQ(read(*engine_, "api").status, Status::not_ready);
    auto failed = events_of(EventType::refresh_failed);
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_NE(failed[0].error.find("had already expired"), std::string::npos);
    advance(1s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(1));
}

TEST_F(EngineTest, AStoreThatFailsStillPublishesAndSaysSo) {
    // The directory does not exist.
    CredentialSpec s = file_spec("api", temp_dir() / "gone" / "api.json");
    engine_->add(s);
    engine_->start();
    settle();
    Status status = provider_->last().completion.complete(success(token(1), 90s, refresh_token(1)));
    settle();
    EXPECT_EQ(status, Status::store);
    // The rotated refresh token is not thrown away: the next refresh uses it.
    EXPECT_EQ(read(*engine_, "api").value, token(1));
    auto refreshed = events_of(EventType::refreshed);
    ASSERT_EQ(refreshed.size(), 1u);
    EXPECT_FALSE(refreshed[0].persisted);
    EXPECT_NE(refreshed[0].error.find("cannot create a temporary file"), std::string::npos);
    advance(60s);
    EXPECT_EQ(provider_->last().refresh, refresh_token(1));
}

TEST_F(EngineTest, ARestartLoadsTheStoredValueAndDoesNotRefreshEarly) {
    CredentialSpec s = file_spec("api", temp_dir() / "api.json");
    engine_->add(s);
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 300s, refresh_token(1)));
    settle();
    advance(10s);
    engine_.reset();  // the process goes away

    auto provider = std::make_shared<ScriptedProvider>();
    Engine again(manual_settings(), clock_);
    again.add_provider("scripted", provider);
    again.add(s);
    again.start();
    again.poll();
    EXPECT_EQ(provider->count(), 0u);
    EXPECT_EQ(read(again, "api").value, token(1));
    clock_->advance(189s);  // 199 s after issue: not yet two thirds
    again.poll();
    EXPECT_EQ(provider->count(), 0u);
    clock_->advance(1s);
    again.poll();
    ASSERT_EQ(provider->count(), 1u);
    EXPECT_EQ(provider->last().refresh, refresh_token(1));
    EXPECT_EQ(provider->last().current, token(1));
}

TEST_F(EngineTest, RemovingWithdrawsTheFlightAndHandlesSeeRemoved) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    auto handle = engine_->find("api");
    auto call = provider_->last();
    engine_->remove("api");
    settle();
    EXPECT_EQ(call.completion.complete(success(token(1), 60s)), Status::stale_completion);
    char buf[64];
    std::size_t len = 0;
    bool stale = false;
    EXPECT_EQ(handle->read(buf, sizeof buf, &len, &stale), Status::removed);
    EXPECT_THROW(engine_->find("api"), Error);
    EXPECT_EQ(events_of(EventType::removed).size(), 1u);
    // The id can be used again.
    engine_->add(spec("api"));
    settle();
    EXPECT_EQ(provider_->count(), 2u);
}

TEST_F(EngineTest, ExpiringIsAnnouncedWhenAFailureLandsInsideTheLead) {
    CredentialSpec s = spec("api");
    s.policy.refresh_at = 0.5;
    s.policy.lead = 20s;
    engine_->add(s);
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 100s));
    advance(50s);
    provider_->last().completion.complete(failure("HTTP 500"));
    settle();
    EXPECT_TRUE(events_of(EventType::expiring).empty());  // 50 s left, lead is 20 s
    for (int i = 0; i < 40 && events_of(EventType::expiring).empty(); ++i) {
        advance(1s);
        auto call = provider_->last();
        (void)call.completion.complete(failure("HTTP 500"));
        settle();
    }
    auto expiring = events_of(EventType::expiring);
    ASSERT_EQ(expiring.size(), 1u);
    EXPECT_GE(expiring[0].time, clock_->now() - 1s);
    EXPECT_GE(*expiring[0].expires_at - expiring[0].time, 0s);
    EXPECT_LE(*expiring[0].expires_at - expiring[0].time, 20s);
}

TEST_F(EngineTest, FailureMessagesNeverRepeatASecret) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    provider_->last().completion.complete(success(token(1), 90s, refresh_token(1)));
    advance(60s);
    provider_->last().completion.complete(
        failure("server rejected " + token(1) + " and " + refresh_token(1)));
    settle();
    auto failed = events_of(EventType::refresh_failed);
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].error.find(kMarker), std::string::npos) << failed[0].error;
    EXPECT_NE(failed[0].error.find(SecretBytes(std::string_view(token(1))).fingerprint()),
              std::string::npos);
    // The engine's status shows the same scrubbed text.
    EXPECT_EQ(engine_->status_json("api").find(kMarker), std::string::npos);
}

TEST_F(EngineTest, StartFailsWhenAHookIsMissingAndStartsNothing) {
    CredentialSpec s = spec("orphan");
    s.provider.name = "nobody";
    engine_->add(spec("api"));
    engine_->add(s);
    try {
        engine_->start();
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::not_found);
        EXPECT_NE(std::string(e.what()).find("credential \"orphan\": no hook named \"nobody\""),
                  std::string::npos);
    }
    settle();
    EXPECT_EQ(provider_->count(), 0u);
}

TEST_F(EngineTest, AHundredThousandCredentialsAllRefreshInOneQueue) {
    constexpr int kCount = 100'000;
    std::atomic<int> answered{0};
    provider_->set_responder([&](const ScriptedProvider::Call &call) {
        answered.fetch_add(1);
        call.completion.complete(success(call.credential + "-kt-secret-SENTINEL", 3600s));
    });
    engine_->reserve(kCount);
    for (int i = 0; i < kCount; ++i)
        engine_->add(spec("c" + std::to_string(i)));
    engine_->start();
    settle();
    EXPECT_EQ(answered.load(), kCount);
    EXPECT_EQ(read(*engine_, "c99999").value, "c99999-kt-secret-SENTINEL");
    // Nothing more until two thirds of the hour; then every one once more.
    advance(2399s);
    EXPECT_EQ(answered.load(), kCount);
    advance(1s);
    EXPECT_EQ(answered.load(), 2 * kCount);
    EXPECT_EQ(engine_->size(), static_cast<std::size_t>(kCount));
}

TEST_F(EngineTest, StatusDescribesACredentialWithoutItsValue) {
    engine_->add(spec("api"));
    engine_->start();
    settle();
    EXPECT_NE(engine_->status_json("api").find("\"state\":\"refreshing\""), std::string::npos);
    provider_->last().completion.complete(success(token(1), 90s, refresh_token(1)));
    settle();
    std::string status = engine_->status_json("api");
    EXPECT_NE(status.find("\"state\":\"fresh\""), std::string::npos) << status;
    EXPECT_NE(status.find("\"version\":1"), std::string::npos) << status;
    EXPECT_EQ(status.find(kMarker), std::string::npos) << status;
    EXPECT_NE(engine_->status_json().find("\"id\":\"api\""), std::string::npos);
}

// With real threads and the system clock: readers on several threads never see an
// expired value while a hook answering from its own thread keeps the token fresh.
TEST(EngineThreads, ReadersNeverSeeAnExpiredValueWhileRefreshesRun) {
    EngineSettings settings;
    settings.threads = 2;
    Engine engine(settings);
    auto provider = std::make_shared<ScriptedProvider>();
    std::atomic<int> minted{0};
    std::vector<std::thread> answerers;
    std::mutex answerers_mutex;
    provider->set_responder([&](const ScriptedProvider::Call &call) {
        int n = minted.fetch_add(1) + 1;
        // Answer from another thread, as a network hook would.
        std::lock_guard lock(answerers_mutex);
        answerers.emplace_back([call, n] { call.completion.complete(success(token(n), 1500ms)); });
    });
    engine.add_provider("scripted", provider);
    // Refresh halfway through a 1.5 s lifetime: 750 ms of slack, so that a loaded
    // machine (sanitizers, parallel tests) cannot make a healthy refresh late.
    CredentialSpec s = spec("api");
    s.policy.refresh_at = 0.5;
    s.policy.lead = 500ms;
    engine.add(s);
    engine.start();

    std::atomic<bool> done{false};
    std::atomic<long> ok{0}, bad{0}, expired{0};
    std::vector<std::thread> readers;
    auto handle = engine.find("api");
    for (int t = 0; t < 3; ++t) {
        readers.emplace_back([&] {
            char buf[128];
            bool seen_value = false;  // "not ready" is fine only before the first value
            while (!done.load()) {
                std::size_t len = 0;
                bool stale = false;
                Status st = handle->read(buf, sizeof buf, &len, &stale);
                if (st == Status::ok && std::string_view(buf, len).starts_with("kt-secret-")) {
                    seen_value = true;
                    ok.fetch_add(1);
                } else if (st == Status::expired) {
                    expired.fetch_add(1);
                } else if (st != Status::not_ready || seen_value) {
                    bad.fetch_add(1);
                }
            }
        });
    }
    // Bounded: until four refreshes have happened or ten seconds have passed.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (minted.load() < 4 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    done.store(true);
    for (auto &r : readers)
        r.join();
    engine.stop(2s);
    {
        std::lock_guard lock(answerers_mutex);
        for (auto &a : answerers)
            a.join();
    }
    EXPECT_GE(minted.load(), 4);
    EXPECT_GT(ok.load(), 0);
    EXPECT_EQ(expired.load(), 0);
    EXPECT_EQ(bad.load(), 0);
}

TEST(EngineThreads, StopWaitsForHooksInFlightAndIsIdempotent) {
    Engine engine(EngineSettings{});
    auto provider = std::make_shared<ScriptedProvider>();
    std::thread answerer;
    std::mutex m;
    std::condition_variable cv;
    bool asked = false;
    provider->set_responder([&](const ScriptedProvider::Call &call) {
        std::lock_guard lock(m);
        asked = true;
        cv.notify_all();
        answerer = std::thread([call] {
            std::this_thread::sleep_for(100ms);
            call.completion.complete(success(token(1), 60s));
        });
    });
    engine.add_provider("scripted", provider);
    engine.add(spec("api"));
    engine.start();
    engine.start();
    {
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return asked; }));
    }
    engine.stop(5s);
    engine.stop();
    answerer.join();
    EXPECT_EQ(read(engine, "api").value, token(1));
    EXPECT_THROW(engine.refresh_now("api"), Error);
}

}  // namespace
}  // namespace keyturn
