// The C interface as a C or ctypes user meets it: every function with NULL, unknown
// ids, malformed JSON, oversized strings and values with NUL bytes. Each must give a
// status and a message, never a crash, and no message may contain a secret.

#include "keyturn.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

constexpr const char *kMarker = "SENTINEL";

// What a test's hooks, subscribers and logger saw.
struct Capture {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::string> events;
    std::vector<std::string> logs;
    std::vector<keyturn_completion> completions;
    std::vector<std::string> requests;
    std::string value = "kt-secret-SENTINEL-value";
    bool answer = true;
    int released = 0;

    template <class Pred>
    bool wait(Pred pred, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, timeout, pred);
    }
};

int hook(const char *request, size_t len, keyturn_completion completion, void *user_data) {
    auto *c = static_cast<Capture *>(user_data);
    bool answer;
    std::string value;
    {
        std::lock_guard lock(c->mutex);
        c->requests.emplace_back(request, len);
        c->completions.push_back(completion);
        answer = c->answer;
        value = c->value;
        c->changed.notify_all();
    }
    if (answer) return keyturn_complete_value(completion, value.data(), value.size(), 3600);
    return KEYTURN_OK;
}

void on_event(const char *json, size_t len, void *user_data) {
    auto *c = static_cast<Capture *>(user_data);
    std::lock_guard lock(c->mutex);
    c->events.emplace_back(json, len);
    c->changed.notify_all();
}

void on_log(int, const char *message, void *user_data) {
    auto *c = static_cast<Capture *>(user_data);
    std::lock_guard lock(c->mutex);
    c->logs.emplace_back(message);
}

void on_release(void *user_data) {
    auto *c = static_cast<Capture *>(user_data);
    std::lock_guard lock(c->mutex);
    ++c->released;
}

std::string spec_json(const std::string &id, const std::string &extra = "") {
    return R"({"id": ")" + id + R"(", "provider": {"type": "hook", "name": "h"},
               "policy": {"jitter": 0})" +
           extra + "}";
}

class CapiTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const char config[] = R"({"engine": {"threads": 1, "hook_timeout": 0.3}})";
        ASSERT_EQ(keyturn_engine_new(&engine_, config, sizeof config - 1), KEYTURN_OK);
        ASSERT_EQ(keyturn_set_logger(engine_, KEYTURN_LOG_DEBUG, on_log, &capture_, nullptr),
                  KEYTURN_OK);
        ASSERT_EQ(keyturn_subscribe(&subscription_, engine_, on_event, &capture_, nullptr),
                  KEYTURN_OK);
        ASSERT_EQ(keyturn_hook_register(engine_, "h", hook, &capture_, on_release), KEYTURN_OK);
    }

    void TearDown() override {
        keyturn_engine_free(engine_);
        EXPECT_EQ(capture_.released, 1);  // the hook's user_data, released once
        for (const auto &e : capture_.events)
            EXPECT_EQ(e.find(kMarker), std::string::npos) << e;
        for (const auto &l : capture_.logs)
            EXPECT_EQ(l.find(kMarker), std::string::npos) << l;
        for (const auto &m : messages_)
            EXPECT_EQ(m.find(kMarker), std::string::npos) << m;
    }

    // Calls a keyturn function and remembers its message, for the secret check.
    int check(int status) {
        messages_.emplace_back(keyturn_last_error());
        return status;
    }
    std::string last_error() { return keyturn_last_error(); }

    void add(const std::string &id, const std::string &extra = "") {
        std::string s = spec_json(id, extra);
        ASSERT_EQ(keyturn_credential_add(engine_, s.data(), s.size()), KEYTURN_OK) << last_error();
    }

    // Adds `id` and starts the engine with a hook that records its requests and
    // leaves them unanswered, for tests that answer (or never answer) themselves.
    void start_with_silent_hook(const std::string &id) {
        {
            std::lock_guard lock(capture_.mutex);
            capture_.answer = false;
        }
        add(id);
        ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    }

    bool wait_for_value(const char *id) {
        for (int i = 0; i < 1000; ++i) {
            char buf[8];
            size_t len = 0;
            int st = keyturn_read(engine_, id, buf, 0, &len, nullptr);
            if (st == KEYTURN_E_BUFFER_TOO_SMALL) return true;
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }

    keyturn_engine *engine_ = nullptr;
    uint64_t subscription_ = 0;
    Capture capture_;
    std::vector<std::string> messages_;
};

TEST(CapiVersion, RuntimeMatchesTheHeader) {
    EXPECT_EQ(keyturn_version_number(), KEYTURN_VERSION_NUMBER);
    EXPECT_STREQ(keyturn_version_string(), KEYTURN_VERSION_STRING);
    EXPECT_EQ(keyturn_abi_version(), KEYTURN_ABI_VERSION);
}

TEST(CapiStatus, EveryCodeHasAStableName) {
    EXPECT_STREQ(keyturn_status_name(KEYTURN_OK), "KEYTURN_OK");
    EXPECT_STREQ(keyturn_status_name(KEYTURN_E_EXPIRED), "KEYTURN_E_EXPIRED");
    EXPECT_STREQ(keyturn_status_name(KEYTURN_E_INTERNAL), "KEYTURN_E_INTERNAL");
    EXPECT_STREQ(keyturn_status_name(-999), "KEYTURN_UNKNOWN");
    for (int s = KEYTURN_E_INTERNAL; s <= KEYTURN_OK; ++s) {
        EXPECT_STRNE(keyturn_status_name(s), "KEYTURN_UNKNOWN") << s;
    }
    EXPECT_NE(keyturn_last_error(), nullptr);
}

TEST(CapiNull, EveryFunctionRefusesNullWithAMessage) {
    keyturn_engine *engine = nullptr;
    char *text = nullptr;
    uint64_t id = 0;
    size_t len = 0;
    char buf[8];
    keyturn_credential *cred = nullptr;

    EXPECT_EQ(keyturn_engine_new(nullptr, "{}", 2), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(keyturn_last_error()).find("out is NULL"), std::string::npos);
    EXPECT_EQ(keyturn_engine_new(&engine, nullptr, 0), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(keyturn_last_error()).find("config is NULL"), std::string::npos);
    EXPECT_EQ(keyturn_engine_start(nullptr), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_engine_stop(nullptr, 0), KEYTURN_E_INVALID_ARGUMENT);
    keyturn_engine_free(nullptr);
    EXPECT_EQ(keyturn_hook_register(nullptr, "h", hook, nullptr, nullptr),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_complete(1, nullptr, 0), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_complete_value(1, nullptr, 5, 1), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_add(nullptr, "{}", 2), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_remove(nullptr, "a"), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_refresh(nullptr, "a"), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_status(nullptr, nullptr, "a"), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_status(&text, nullptr, "a"), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_engine_status(&text, nullptr), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_read(nullptr, "a", buf, sizeof buf, &len, nullptr),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_open(nullptr, nullptr, "a"), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_open(&cred, nullptr, "a"), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_credential_read(nullptr, buf, sizeof buf, &len, nullptr),
              KEYTURN_E_INVALID_ARGUMENT);
    keyturn_credential_close(nullptr);
    EXPECT_EQ(keyturn_subscribe(&id, nullptr, on_event, nullptr, nullptr),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_unsubscribe(nullptr, 1), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(keyturn_set_logger(nullptr, 0, on_log, nullptr, nullptr), KEYTURN_E_INVALID_ARGUMENT);
    keyturn_string_free(nullptr);
}

TEST_F(CapiTest, NullArgumentsOnALiveEngine) {
    size_t len = 0;
    char buf[8];
    uint64_t id = 0;
    keyturn_credential *cred = nullptr;
    EXPECT_EQ(check(keyturn_hook_register(engine_, nullptr, hook, nullptr, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_hook_register(engine_, "x", nullptr, nullptr, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_credential_add(engine_, nullptr, 3)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_credential_remove(engine_, nullptr)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_read(engine_, nullptr, buf, sizeof buf, &len, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    add("api");
    EXPECT_EQ(check(keyturn_read(engine_, "api", buf, sizeof buf, nullptr, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_read(engine_, "api", nullptr, 5, &len, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_subscribe(&id, engine_, nullptr, nullptr, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_subscribe(nullptr, engine_, on_event, nullptr, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_credential_open(&cred, engine_, nullptr)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(cred, nullptr);
}

TEST_F(CapiTest, UnknownIdsAreNotFound) {
    size_t len = 0;
    char buf[8];
    char *text = nullptr;
    keyturn_credential *cred = nullptr;
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    EXPECT_EQ(check(keyturn_read(engine_, "nope", buf, sizeof buf, &len, nullptr)),
              KEYTURN_E_NOT_FOUND);
    EXPECT_EQ(last_error(), "no credential \"nope\"");
    EXPECT_EQ(check(keyturn_credential_remove(engine_, "nope")), KEYTURN_E_NOT_FOUND);
    EXPECT_EQ(check(keyturn_credential_refresh(engine_, "nope")), KEYTURN_E_NOT_FOUND);
    EXPECT_EQ(check(keyturn_credential_status(&text, engine_, "nope")), KEYTURN_E_NOT_FOUND);
    EXPECT_EQ(text, nullptr);
    EXPECT_EQ(check(keyturn_credential_open(&cred, engine_, "nope")), KEYTURN_E_NOT_FOUND);
    EXPECT_EQ(check(keyturn_unsubscribe(engine_, 999)), KEYTURN_E_NOT_FOUND);
    std::string s = spec_json("orphan").replace(spec_json("orphan").find("\"h\""), 3, "\"zz\"");
    EXPECT_EQ(check(keyturn_credential_add(engine_, s.data(), s.size())), KEYTURN_E_NOT_FOUND);
    EXPECT_NE(last_error().find("no hook named \"zz\""), std::string::npos) << last_error();
}

TEST_F(CapiTest, MalformedJsonNamesWhatIsWrong) {
    keyturn_engine *other = nullptr;
    const char broken[] = "{\"engine\": {\"threads\": 0}, \"credentials\": [{]}";
    EXPECT_EQ(check(keyturn_engine_new(&other, broken, sizeof broken - 1)), KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("not valid JSON"), std::string::npos) << last_error();
    const char wrong[] = "{\"engine\": {\"threads\": 0}}";
    EXPECT_EQ(check(keyturn_engine_new(&other, wrong, sizeof wrong - 1)), KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("engine.threads: expected a whole number from 1 to 64"),
              std::string::npos)
        << last_error();
    EXPECT_EQ(other, nullptr);

    std::string spec = spec_json("api", R"(, "policy": {"jitter": "lots"})");
    EXPECT_EQ(check(keyturn_credential_add(engine_, spec.data(), spec.size())), KEYTURN_E_CONFIG);
    spec = R"({"id": "api", "provider": {"type": "hook", "name": "h"}, "policy": {"jitter": 2}})";
    EXPECT_EQ(check(keyturn_credential_add(engine_, spec.data(), spec.size())), KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("policy.jitter: expected a number between 0 and 0.5"),
              std::string::npos)
        << last_error();
    // The length is honoured: a valid prefix with garbage after it is cut at len.
    std::string padded = spec_json("cut") + "GARBAGE";
    EXPECT_EQ(check(keyturn_credential_add(engine_, padded.data(), padded.size() - 7)), KEYTURN_OK)
        << last_error();
}

TEST_F(CapiTest, StringsOverOneMebibyteAreRefused) {
    std::string huge((1u << 20) + 10, 'a');
    size_t len = 0;
    char buf[8];
    EXPECT_EQ(check(keyturn_read(engine_, huge.c_str(), buf, sizeof buf, &len, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_LT(last_error().size(), 200u);
    EXPECT_EQ(check(keyturn_credential_remove(engine_, huge.c_str())), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_hook_register(engine_, huge.c_str(), hook, nullptr, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    std::string spec = spec_json(huge);
    EXPECT_EQ(check(keyturn_credential_add(engine_, spec.data(), spec.size())), KEYTURN_E_CONFIG);
    EXPECT_LT(last_error().size(), 300u);
    std::string big_spec =
        spec_json("a", ", \"metadata\": {\"k\": \"" + std::string(5u << 20, 'x') + "\"}");
    EXPECT_EQ(check(keyturn_credential_add(engine_, big_spec.data(), big_spec.size())),
              KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("at most"), std::string::npos);
}

TEST_F(CapiTest, ValuesWithNulBytesRoundTrip) {
    {
        std::lock_guard lock(capture_.mutex);
        capture_.value = std::string("kt-secret-SENTINEL\0with\0nul", 27);
    }
    add("api");
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    ASSERT_TRUE(wait_for_value("api"));
    char buf[64];
    size_t len = 0;
    unsigned flags = 99;
    ASSERT_EQ(keyturn_read(engine_, "api", buf, sizeof buf, &len, &flags), KEYTURN_OK);
    EXPECT_EQ(std::string(buf, len), std::string("kt-secret-SENTINEL\0with\0nul", 27));
    EXPECT_EQ(flags, 0u);
}

TEST_F(CapiTest, AShortBufferReportsTheNeededSize) {
    add("api");
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    ASSERT_TRUE(wait_for_value("api"));
    keyturn_credential *cred = nullptr;
    ASSERT_EQ(keyturn_credential_open(&cred, engine_, "api"), KEYTURN_OK);
    char buf[4];
    size_t len = 0;
    EXPECT_EQ(check(keyturn_credential_read(cred, buf, sizeof buf, &len, nullptr)),
              KEYTURN_E_BUFFER_TOO_SMALL);
    EXPECT_EQ(len, std::strlen("kt-secret-SENTINEL-value"));
    std::vector<char> big(len);
    EXPECT_EQ(keyturn_credential_read(cred, big.data(), big.size(), &len, nullptr), KEYTURN_OK);
    EXPECT_EQ(std::string(big.data(), len), "kt-secret-SENTINEL-value");
    keyturn_credential_close(cred);
}

TEST_F(CapiTest, CompletionsAreSingleUseAndLateOnesAreStale) {
    start_with_silent_hook("api");
    ASSERT_TRUE(capture_.wait([&] { return !capture_.completions.empty(); }));
    keyturn_completion c = capture_.completions[0];
    const char result[] = R"({"value": "kt-secret-SENTINEL-1", "expires_in": 60})";
    EXPECT_EQ(keyturn_complete(c, result, sizeof result - 1), KEYTURN_OK) << last_error();
    EXPECT_EQ(check(keyturn_complete(c, result, sizeof result - 1)), KEYTURN_E_STALE_COMPLETION);
    EXPECT_EQ(check(keyturn_complete_value(c, "x", 1, 5)), KEYTURN_E_STALE_COMPLETION);
    EXPECT_EQ(check(keyturn_complete_error(c, KEYTURN_ACTION_RETRY, "late", 0)),
              KEYTURN_E_STALE_COMPLETION);
    EXPECT_EQ(check(keyturn_complete_value(0, "x", 1, 5)), KEYTURN_E_STALE_COMPLETION);
    EXPECT_EQ(check(keyturn_complete_value(UINT64_MAX, "x", 1, 5)), KEYTURN_E_STALE_COMPLETION);
}

TEST_F(CapiTest, AHookThatNeverAnswersTimesOut) {
    start_with_silent_hook("api");
    ASSERT_TRUE(capture_.wait([&] {
        for (const auto &e : capture_.events) {
            if (e.find("refresh_failed") != std::string::npos) return true;
        }
        return false;
    }));
    keyturn_completion first;
    {
        std::lock_guard lock(capture_.mutex);
        first = capture_.completions[0];
        bool found = false;
        for (const auto &e : capture_.events) {
            found |= e.find("did not answer within 0.3s") != std::string::npos;
        }
        EXPECT_TRUE(found);
    }
    EXPECT_EQ(check(keyturn_complete_value(first, "kt-secret-SENTINEL-late", 23, 60)),
              KEYTURN_E_STALE_COMPLETION);
}

TEST_F(CapiTest, MalformedHookResultsFailTheRefreshAndSayWhy) {
    start_with_silent_hook("api");
    ASSERT_TRUE(capture_.wait([&] { return !capture_.completions.empty(); }));
    const char garbage[] = "{\"value\": \"kt-secret-SENTINEL-x\", \"expires_in\": \"soon\"}";
    EXPECT_EQ(check(keyturn_complete(capture_.completions[0], garbage, sizeof garbage - 1)),
              KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("expires_in"), std::string::npos) << last_error();
    ASSERT_TRUE(capture_.wait([&] {
        for (const auto &e : capture_.events) {
            if (e.find("malformed result") != std::string::npos) return true;
        }
        return false;
    }));
    // Invalid completion arguments are refused without using the completion up.
    ASSERT_TRUE(capture_.wait([&] { return capture_.completions.size() >= 2; }));
    keyturn_completion second = capture_.completions[1];
    EXPECT_EQ(check(keyturn_complete_error(second, 42, "x", 0)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_complete_error(second, KEYTURN_ACTION_RETRY, "x", -1)),
              KEYTURN_E_INVALID_ARGUMENT);
    std::string too_big((1u << 20) + 1, 'v');
    EXPECT_EQ(check(keyturn_complete_value(second, too_big.data(), too_big.size(), 60)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_complete_value(second, "v", 1, 60)), KEYTURN_E_STALE_COMPLETION);
}

TEST_F(CapiTest, LifecycleCallsAreIdempotentAndDuplicatesRefused) {
    EXPECT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    EXPECT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    EXPECT_EQ(keyturn_engine_stop(engine_, 100), KEYTURN_OK);
    EXPECT_EQ(keyturn_engine_stop(engine_, 100), KEYTURN_OK);
    EXPECT_EQ(check(keyturn_hook_register(engine_, "h", hook, &capture_, on_release)),
              KEYTURN_E_EXISTS);
    add("api");
    std::string s = spec_json("api");
    EXPECT_EQ(check(keyturn_credential_add(engine_, s.data(), s.size())), KEYTURN_E_EXISTS);
    EXPECT_EQ(check(keyturn_credential_refresh(engine_, "api")), KEYTURN_E_STATE);
    EXPECT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    ASSERT_TRUE(wait_for_value("api"));
    EXPECT_EQ(keyturn_credential_refresh(engine_, "api"), KEYTURN_OK);
}

TEST_F(CapiTest, StatusIsJsonWithoutTheValue) {
    add("api");
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    ASSERT_TRUE(wait_for_value("api"));
    char *one = nullptr;
    char *all = nullptr;
    ASSERT_EQ(keyturn_credential_status(&one, engine_, "api"), KEYTURN_OK);
    ASSERT_EQ(keyturn_engine_status(&all, engine_), KEYTURN_OK);
    std::string a = one, b = all;
    keyturn_string_free(one);
    keyturn_string_free(all);
    EXPECT_NE(a.find("\"id\":\"api\""), std::string::npos) << a;
    EXPECT_NE(a.find("\"state\":\"fresh\""), std::string::npos) << a;
    EXPECT_EQ(a.find(kMarker), std::string::npos) << a;
    EXPECT_EQ(b.front(), '[');
    EXPECT_EQ(b.find(kMarker), std::string::npos);
}

TEST_F(CapiTest, HandlesOutliveRemovalAndTheEngine) {
    add("api");
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    ASSERT_TRUE(wait_for_value("api"));
    keyturn_credential *cred = nullptr;
    ASSERT_EQ(keyturn_credential_open(&cred, engine_, "api"), KEYTURN_OK);
    ASSERT_EQ(keyturn_credential_remove(engine_, "api"), KEYTURN_OK);
    char buf[64];
    size_t len = 0;
    EXPECT_EQ(check(keyturn_credential_read(cred, buf, sizeof buf, &len, nullptr)),
              KEYTURN_E_REMOVED);
    add("again");
    keyturn_credential *again = nullptr;
    ASSERT_EQ(keyturn_credential_open(&again, engine_, "again"), KEYTURN_OK);
    keyturn_engine_free(engine_);
    engine_ = nullptr;
    EXPECT_EQ(check(keyturn_credential_read(again, buf, sizeof buf, &len, nullptr)),
              KEYTURN_E_REMOVED);
    keyturn_credential_close(cred);
    keyturn_credential_close(again);
}

TEST_F(CapiTest, UnsubscribedCallbacksAreReleasedAndNotCalledAgain) {
    Capture other;
    uint64_t id = 0;
    ASSERT_EQ(keyturn_subscribe(&id, engine_, on_event, &other, on_release), KEYTURN_OK);
    ASSERT_EQ(keyturn_unsubscribe(engine_, id), KEYTURN_OK);
    EXPECT_EQ(other.released, 1);
    EXPECT_EQ(check(keyturn_unsubscribe(engine_, id)), KEYTURN_E_NOT_FOUND);
    add("api");
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    ASSERT_TRUE(wait_for_value("api"));
    ASSERT_TRUE(capture_.wait([&] { return !capture_.events.empty(); }));
    EXPECT_TRUE(other.events.empty());
}

TEST(CapiLifecycle, FreeingTheEngineWhileAHookIsInFlightIsSafe) {
    Capture capture;
    capture.answer = false;
    keyturn_engine *engine = nullptr;
    const char config[] = R"({"engine": {"drain_timeout": 0.05},
        "credentials": [{"id": "api", "provider": {"type": "hook", "name": "h"}}]})";
    ASSERT_EQ(keyturn_engine_new(&engine, config, sizeof config - 1), KEYTURN_OK);
    ASSERT_EQ(keyturn_hook_register(engine, "h", hook, &capture, on_release), KEYTURN_OK);
    ASSERT_EQ(keyturn_engine_start(engine), KEYTURN_OK);
    ASSERT_TRUE(capture.wait([&] { return !capture.completions.empty(); }));
    keyturn_engine_free(engine);
    EXPECT_EQ(capture.released, 1);
    EXPECT_EQ(keyturn_complete_value(capture.completions[0], "v", 1, 60),
              KEYTURN_E_STALE_COMPLETION);
}

// --- secrets ------------------------------------------------------------------------

// A step hook: create answers with a value (NUL bytes included), the other steps with
// "{}"; the step named in Capture::value fails instead.
int step_hook(const char *request, size_t len, keyturn_completion completion, void *user_data) {
    auto *c = static_cast<Capture *>(user_data);
    std::string text(request, len);
    std::string fail_step;
    {
        std::lock_guard lock(c->mutex);
        c->requests.push_back(text);
        c->completions.push_back(completion);
        fail_step = c->value;
        c->changed.notify_all();
    }
    if (!fail_step.empty() && text.find("\"step\":\"" + fail_step + "\"") != std::string::npos) {
        return keyturn_complete_error(completion, KEYTURN_ACTION_RETRY, "the target said no", 0);
    }
    if (text.find("\"step\":\"create\"") != std::string::npos) {
        static const char value[] = "kt-secret-SENTINEL-\0rotated";
        return keyturn_complete_value(completion, value, sizeof value - 1, 0);
    }
    const char empty[] = "{}";
    return keyturn_complete(completion, empty, 2);
}

class CapiSecretTest : public CapiTest {
  protected:
    void SetUp() override {
        CapiTest::SetUp();
        ASSERT_EQ(keyturn_hook_register(engine_, "steps", step_hook, &steps_, nullptr), KEYTURN_OK);
        steps_.value.clear();
    }
    void add_secret(const std::string &extra = "") {
        std::string s = R"({"id": "db", "hook": {"type": "hook", "name": "steps"},
            "retry": {"backoff": {"initial": 0.05, "max": 0.1}, "max_attempts": 2})" +
                        extra + "}";
        ASSERT_EQ(keyturn_secret_add(engine_, s.data(), s.size()), KEYTURN_OK) << last_error();
    }
    bool wait_event(const std::string &type) {
        return capture_.wait([&] {
            for (const auto &e : capture_.events)
                if (e.find("\"type\":\"" + type + "\"") != std::string::npos) return true;
            return false;
        });
    }
    Capture steps_;
};

TEST_F(CapiSecretTest, ARotationThroughTheCInterface) {
    add_secret();
    const char seed[] = "kt-secret-SENTINEL-seed";
    ASSERT_EQ(keyturn_secret_seed(engine_, "db", seed, sizeof seed - 1), KEYTURN_OK);
    EXPECT_EQ(check(keyturn_secret_seed(engine_, "db", seed, sizeof seed - 1)), KEYTURN_E_STATE);
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);
    char *version = nullptr;
    ASSERT_EQ(keyturn_secret_rotate(&version, engine_, "db"), KEYTURN_OK) << last_error();
    ASSERT_NE(version, nullptr);
    std::string v(version);
    keyturn_string_free(version);
    ASSERT_TRUE(wait_event("rotated"));

    char buf[64];
    size_t len = 0;
    EXPECT_EQ(keyturn_secret_read(engine_, "db", nullptr, buf, 0, &len),
              KEYTURN_E_BUFFER_TOO_SMALL);
    EXPECT_EQ(len, 27u);
    ASSERT_EQ(keyturn_secret_read(engine_, "db", "CURRENT", buf, sizeof buf, &len), KEYTURN_OK);
    EXPECT_EQ(std::string(buf, len), std::string("kt-secret-SENTINEL-\0rotated", 27));
    ASSERT_EQ(keyturn_secret_read(engine_, "db", "previous", buf, sizeof buf, &len), KEYTURN_OK);
    EXPECT_EQ(std::string(buf, len), seed);
    EXPECT_EQ(check(keyturn_secret_read(engine_, "db", "PENDING", buf, sizeof buf, &len)),
              KEYTURN_E_NOT_READY);
    EXPECT_EQ(check(keyturn_secret_read(engine_, "db", "NEWEST", buf, sizeof buf, &len)),
              KEYTURN_E_INVALID_ARGUMENT);

    char *status = nullptr;
    ASSERT_EQ(keyturn_secret_status(&status, engine_, "db"), KEYTURN_OK);
    std::string s(status);
    keyturn_string_free(status);
    EXPECT_NE(s.find("\"version\":\"" + v + "\""), std::string::npos) << s;
    EXPECT_EQ(s.find(kMarker), std::string::npos);
    ASSERT_EQ(keyturn_secret_status(&status, engine_, nullptr), KEYTURN_OK);
    EXPECT_EQ(status[0], '[');
    keyturn_string_free(status);

    // A completion used twice is harmless.
    keyturn_completion first;
    {
        std::lock_guard lock(steps_.mutex);
        first = steps_.completions.front();
    }
    EXPECT_EQ(check(keyturn_complete(first, "{}", 2)), KEYTURN_E_STALE_COMPLETION);
    EXPECT_EQ(check(keyturn_secret_remove(engine_, "db")), KEYTURN_OK);
    EXPECT_EQ(check(keyturn_secret_rotate(nullptr, engine_, "db")), KEYTURN_E_NOT_FOUND);
}

TEST_F(CapiSecretTest, AFailingStepIsReportedWithTheStepAndAbandoned) {
    add_secret();
    steps_.value = "test";
    ASSERT_EQ(keyturn_engine_start(engine_), KEYTURN_OK);  // no value: rotates at once
    ASSERT_TRUE(wait_event("rotation_abandoned"));
    std::lock_guard lock(capture_.mutex);
    bool named = false;
    for (const auto &e : capture_.events) {
        if (e.find("\"rotation_failed\"") != std::string::npos &&
            e.find("\"step\":\"test\"") != std::string::npos &&
            e.find("the target said no") != std::string::npos) {
            named = true;
        }
    }
    EXPECT_TRUE(named);
}

TEST_F(CapiSecretTest, MalformedSecretInputIsRefusedWithAPath) {
    char *text = nullptr;
    char buf[8];
    size_t len = 0;
    EXPECT_EQ(check(keyturn_secret_add(nullptr, "{}", 2)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_add(engine_, nullptr, 2)), KEYTURN_E_INVALID_ARGUMENT);
    const char bad[] = R"({"id": "db", "hook": {"type": "exec", "command": [""]}})";
    EXPECT_EQ(check(keyturn_secret_add(engine_, bad, sizeof bad - 1)), KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("hook.command[0]: expected the program's path"), std::string::npos)
        << last_error();
    const char cron[] =
        R"({"id": "db", "hook": {"type": "hook", "name": "steps"}, "schedule": {"cron": "61 * * * *"}})";
    EXPECT_EQ(check(keyturn_secret_add(engine_, cron, sizeof cron - 1)), KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("schedule.cron"), std::string::npos) << last_error();
    std::string huge((1u << 20) * 5, ' ');
    EXPECT_EQ(check(keyturn_secret_add(engine_, huge.data(), huge.size())), KEYTURN_E_CONFIG);
    EXPECT_EQ(check(keyturn_secret_remove(engine_, nullptr)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_remove(engine_, "nope")), KEYTURN_E_NOT_FOUND);
    EXPECT_EQ(check(keyturn_secret_rotate(nullptr, nullptr, "db")), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_seed(engine_, "nope", "x", 1)), KEYTURN_E_NOT_FOUND);
    add_secret();
    EXPECT_EQ(check(keyturn_secret_seed(engine_, "db", nullptr, 1)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_seed(engine_, "db", "x", 0)), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_read(engine_, "db", nullptr, nullptr, 4, &len)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_read(engine_, "db", nullptr, buf, sizeof buf, nullptr)),
              KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_read(engine_, "db", nullptr, buf, sizeof buf, &len)),
              KEYTURN_E_NOT_READY);
    EXPECT_EQ(check(keyturn_secret_status(nullptr, engine_, "db")), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_status(&text, engine_, "bad id")), KEYTURN_E_INVALID_ARGUMENT);
    EXPECT_EQ(check(keyturn_secret_rotate(nullptr, engine_, "db")), KEYTURN_E_STATE);
    // Secrets in the engine configuration: mistakes are named by their path.
    keyturn_engine *other = nullptr;
    const char config[] = R"({"secrets": [{"id": "a", "hook": {"type": "hook", "name": "x"}},
                                          {"id": "a", "hook": {"type": "hook", "name": "x"}}]})";
    EXPECT_EQ(check(keyturn_engine_new(&other, config, sizeof config - 1)), KEYTURN_E_CONFIG);
    EXPECT_NE(last_error().find("secrets[1].id: duplicate id"), std::string::npos) << last_error();
}

}  // namespace
