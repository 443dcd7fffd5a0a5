#include <gtest/gtest.h>

#include "core/events.hpp"
#include "core/hook_provider.hpp"
#include "core/json_support.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

std::string result_error(std::string_view text) {
    try {
        parse_hook_result(text);
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::config);
        return e.what();
    }
    ADD_FAILURE() << "accepted " << text;
    return {};
}

TEST(HookResult, ReadsASuccess) {
    auto outcome = parse_hook_result(R"({"value": "kt-secret-SENTINEL-a", "expires_in": 60,
        "refresh": "kt-secret-SENTINEL-r", "renewable": true, "metadata": {"scope": "x"}})");
    auto &s = std::get<RefreshSuccess>(outcome);
    EXPECT_EQ(s.value.reveal(), "kt-secret-SENTINEL-a");
    EXPECT_EQ(s.refresh->reveal(), "kt-secret-SENTINEL-r");
    EXPECT_EQ(s.expires_in, 60s);
    EXPECT_TRUE(s.renewable);
    EXPECT_EQ(s.metadata.at("scope"), "x");
}

TEST(HookResult, ReadsBase64ValuesAndAbsoluteExpiry) {
    auto outcome = parse_hook_result(R"({"value_base64": "AGsA", "expires_at": 1800000000})");
    auto &s = std::get<RefreshSuccess>(outcome);
    EXPECT_EQ(s.value.reveal(), std::string_view("\0k\0", 3));
    EXPECT_EQ(s.expires_at, TimePoint(1'800'000'000s));
}

TEST(HookResult, ReadsAFailureWithItsAction) {
    auto outcome =
        parse_hook_result(R"({"error": "HTTP 503", "action": "login", "retry_after": 7})");
    auto &f = std::get<RefreshFailure>(outcome);
    EXPECT_EQ(f.reason, "HTTP 503");
    EXPECT_EQ(f.action, FailureAction::login);
    EXPECT_EQ(f.retry_after, 7s);
}

TEST(HookResult, MistakesAreNamedAndValuesNeverQuoted) {
    EXPECT_NE(result_error(R"({"expires_in": 5})").find("value: is required"), std::string::npos);
    EXPECT_NE(result_error(R"({"value": "kt-secret-SENTINEL-b"})").find("expires_in: is required"),
              std::string::npos);
    std::string both = result_error(R"({"value": "kt-secret-SENTINEL-c", "value_base64": "AA==",
                                        "expires_in": 1})");
    EXPECT_NE(both.find("not both"), std::string::npos);
    EXPECT_EQ(both.find("SENTINEL"), std::string::npos);
    EXPECT_NE(result_error(R"({"value": 12, "expires_in": 1})").find("value: expected a string"),
              std::string::npos);
    EXPECT_NE(result_error(R"({"value": "v", "expires_in": -1})").find("expires_in"),
              std::string::npos);
    EXPECT_NE(
        result_error(R"({"value": "v", "expires_in": 1, "colour": 1})").find("colour: unknown key"),
        std::string::npos);
    EXPECT_NE(result_error(R"({"error": "x", "action": "panic"})").find("action: expected"),
              std::string::npos);
    EXPECT_NE(result_error("kt-secret-SENTINEL-d").find("not valid JSON"), std::string::npos);
    EXPECT_EQ(result_error("kt-secret-SENTINEL-d").find("SENTINEL"), std::string::npos);
}

TEST(HookResult, RejectsAValueOverOneMebibyte) {
    std::string big =
        R"({"value": ")" + std::string((1u << 20) + 1, 'v') + R"(", "expires_in": 1})";
    EXPECT_NE(result_error(big).find("at most 1048576"), std::string::npos);
}

TEST(HookRequest, IsValidJsonWithEveryField) {
    Snapshot current;
    current.value = SecretBytes(std::string_view("kt-secret-SENTINEL-\"quoted\"\n"));
    current.version = 4;
    current.issued_at = TimePoint(1'700'000'000s);
    current.expires_at = current.issued_at + 60s;
    SecretBytes refresh(std::string_view("\xff\xfe binary"));
    Metadata metadata{{"team", "payments"}};
    RefreshRequest r{"db", "scheduled", 2, &current, &refresh, &metadata};

    ScrubbedString text;
    write_hook_request(text, r);
    auto doc = boost::json::parse(text.str()).as_object();
    EXPECT_EQ(doc.at("credential").as_string(), "db");
    EXPECT_EQ(doc.at("reason").as_string(), "scheduled");
    EXPECT_EQ(doc.at("attempt").as_int64(), 2);
    EXPECT_EQ(doc.at("current").at("value").as_string(), "kt-secret-SENTINEL-\"quoted\"\n");
    EXPECT_EQ(doc.at("current").at("version").as_int64(), 4);
    EXPECT_DOUBLE_EQ(doc.at("current").at("expires_at").to_number<double>(), 1'700'000'060.0);
    // Not UTF-8: sent as base64.
    auto decoded = base64_decode(doc.at("refresh_base64").as_string());
    EXPECT_EQ(decoded->reveal(), "\xff\xfe binary");
    EXPECT_EQ(doc.at("metadata").at("team").as_string(), "payments");
}

TEST(HookRequest, WithoutCurrentValueOrRefresh) {
    RefreshRequest r{"api", "initial", 1, nullptr, nullptr, nullptr};
    ScrubbedString text;
    write_hook_request(text, r);
    auto doc = boost::json::parse(text.str()).as_object();
    EXPECT_TRUE(doc.at("current").is_null());
    EXPECT_TRUE(doc.at("refresh").is_null());
    EXPECT_TRUE(doc.at("metadata").as_object().empty());
}

TEST(EventJson, IsValidJsonWithMillisecondTimes) {
    Event e;
    e.type = EventType::refresh_failed;
    e.credential = "db";
    e.time = TimePoint(1'700'000'000'123ms);
    e.error = "HTTP 503: \"busy\"\n";
    e.attempt = 3;
    e.action = "retry";
    e.retry_at = e.time + 4s;
    std::string text = e.to_json();
    auto doc = boost::json::parse(text).as_object();
    EXPECT_EQ(doc.at("type").as_string(), "refresh_failed");
    EXPECT_EQ(doc.at("error").as_string(), "HTTP 503: \"busy\"\n");
    EXPECT_EQ(doc.at("attempt").as_int64(), 3);
    EXPECT_NE(text.find("\"time\":1700000000.123"), std::string::npos) << text;
    EXPECT_NE(text.find("\"retry_at\":1700000004.123"), std::string::npos) << text;

    e.type = EventType::refreshed;
    e.expires_at.reset();
    auto refreshed = boost::json::parse(e.to_json()).as_object();
    EXPECT_TRUE(refreshed.at("expires_at").is_null());
    EXPECT_TRUE(refreshed.at("persisted").as_bool());
}

}  // namespace
}  // namespace keyturn
