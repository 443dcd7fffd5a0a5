#include "core/json_refresh.hpp"

#include <gtest/gtest.h>

#include "core/status.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

const TimePoint kNow = TimePoint(std::chrono::seconds(1'800'000'000));

std::string rendered(std::string_view text, TemplateEncoding enc, const SecretBytes *v,
                     const SecretBytes *r) {
    ScrubbedString out;
    render_template(out, text, enc, v, r);
    return out.str();
}

TEST(JsonRefreshTemplate, PlacesValuesEncodedForWhereTheyGo) {
    SecretBytes value(std::string_view("a\"b c"));
    SecretBytes refresh(std::string_view("r&t=1"));
    EXPECT_EQ(
        rendered(R"({"refreshToken": "{{refresh}}"})", TemplateEncoding::json, &value, &refresh),
        R"({"refreshToken": "r&t=1"})");
    EXPECT_EQ(rendered(R"({"v": "{{value}}"})", TemplateEncoding::json, &value, &refresh),
              R"({"v": "a\"b c"})");
    EXPECT_EQ(rendered("token={{refresh}}&x=1", TemplateEncoding::form, &value, &refresh),
              "token=r%26t%3D1&x=1");
    EXPECT_EQ(rendered("Bearer {{value}}", TemplateEncoding::header, &value, &refresh),
              "Bearer a\"b c");
    EXPECT_EQ(rendered("no placeholders", TemplateEncoding::json, nullptr, nullptr),
              "no placeholders");
}

TEST(JsonRefreshTemplate, MistakesAreNamed) {
    SecretBytes value(std::string_view("line\r\nInjected: yes"));
    auto error_of = [&](std::string_view text, TemplateEncoding enc, const SecretBytes *v,
                        const SecretBytes *r) {
        try {
            rendered(text, enc, v, r);
        } catch (const Error &e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(error_of("{{secret}}", TemplateEncoding::json, &value, nullptr).find("{{secret}}"),
              std::string::npos);
    EXPECT_NE(error_of("{{refresh}}", TemplateEncoding::json, &value, nullptr).find("has none"),
              std::string::npos);
    const std::string header =
        error_of("Bearer {{value}}", TemplateEncoding::header, &value, nullptr);
    EXPECT_NE(header.find("line break"), std::string::npos) << header;
    EXPECT_EQ(header.find("Injected"), std::string::npos) << header;
    std::vector<std::string> names;
    EXPECT_TRUE(uses_placeholders("a {{value}} b {{refresh}}", &names));
    EXPECT_EQ(names, (std::vector<std::string>{"value", "refresh"}));
}

TEST(JsonRefreshPointer, ChecksJsonPointers) {
    EXPECT_FALSE(check_json_pointer("/authToken"));
    EXPECT_FALSE(check_json_pointer("/data/0/a~1b"));
    EXPECT_TRUE(check_json_pointer(""));
    EXPECT_TRUE(check_json_pointer("authToken"));
    EXPECT_TRUE(check_json_pointer("/a~2"));
}

TEST(JsonRefreshResponse, MapsValueRefreshAndExpiry) {
    JsonResponseMapping m;
    m.value = "/authToken";
    m.refresh = "/refreshToken";
    m.expires_at = "/validUntil";
    auto o = interpret_json_refresh(
        200, R"({"authToken":"at","refreshToken":"rt","validUntil":1800000600})", std::nullopt, m,
        kNow, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(o));
    auto &s = std::get<RefreshSuccess>(o);
    EXPECT_EQ(s.value.reveal(), "at");
    EXPECT_EQ(s.refresh->reveal(), "rt");
    EXPECT_EQ(s.expires_at, kNow + 600s);

    m.expires_at = "/data/expires";
    o = interpret_json_refresh(
        200, R"({"authToken":"at","data":{"expires":"2027-01-15T09:00:00+01:00"}})", std::nullopt,
        m, kNow, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(o));
    EXPECT_EQ(std::get<RefreshSuccess>(o).expires_at, from_unix_seconds(1'800'000'000));
    EXPECT_FALSE(std::get<RefreshSuccess>(o).refresh);  // absent: the old one stays

    JsonResponseMapping in;
    in.value = "/token";
    in.expires_in = "/ttl";
    o = interpret_json_refresh(201, R"({"token":"t","ttl":"90"})", std::nullopt, in, kNow, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(o));
    EXPECT_EQ(std::get<RefreshSuccess>(o).expires_in, 90s);
}

TEST(JsonRefreshResponse, FailuresNameThePointerNotTheValue) {
    JsonResponseMapping m;
    m.value = "/authToken";
    m.expires_at = "/validUntil";
    auto reason = [&](int status, std::string_view body, FailureAction expected) {
        auto o = interpret_json_refresh(status, body, std::nullopt, m, kNow, 1h);
        EXPECT_TRUE(std::holds_alternative<RefreshFailure>(o)) << body;
        auto &f = std::get<RefreshFailure>(o);
        EXPECT_EQ(f.action, expected) << body;
        EXPECT_EQ(f.reason.find("SENTINEL"), std::string::npos) << f.reason;
        return f.reason;
    };
    EXPECT_NE(reason(200, R"({"other":"kt-SENTINEL"})", FailureAction::retry).find("/authToken"),
              std::string::npos);
    EXPECT_NE(
        reason(200, R"({"authToken":"kt-SENTINEL","validUntil":"soon"})", FailureAction::retry)
            .find("/validUntil"),
        std::string::npos);
    reason(200, "<html>kt-SENTINEL", FailureAction::retry);
    reason(503, "", FailureAction::retry);
    reason(429, "", FailureAction::retry);
    reason(401, R"({"authToken":"kt-SENTINEL"})", FailureAction::give_up);
    reason(404, "", FailureAction::give_up);
}

TEST(TokenDocument, ReadsTheConsoleFormat) {
    Snapshot s = parse_token_document(
        R"({"authToken":"eyJ-SENTINEL","refreshToken":"rt-SENTINEL","validUntil":1800003600})",
        kNow);
    EXPECT_EQ(s.value.reveal(), "eyJ-SENTINEL");
    EXPECT_EQ(s.refresh->reveal(), "rt-SENTINEL");
    EXPECT_EQ(s.expires_at, kNow + 1h);
    try {
        parse_token_document(R"({"authToken":"","validUntil":"x"})", kNow);
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("authToken: expected a non-empty string"),
                  std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("validUntil: expected unix seconds"),
                  std::string::npos);
    }
    EXPECT_THROW(parse_token_document("[1]", kNow), Error);
    EXPECT_THROW(parse_token_document("{", kNow), Error);
}

}  // namespace
}  // namespace keyturn
