#include "core/oauth2.hpp"

#include <gtest/gtest.h>

#include "core/json_support.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kMarker = "SENTINEL";

TEST(OAuth2Request, RefreshGrantWithBasicAuthentication) {
    OAuth2Client client{"my app", SecretBytes(std::string_view("s3cr:t/SENTINEL")),
                        OAuth2Client::Auth::basic, "read write"};
    OAuth2Request r = build_refresh_request(client, SecretBytes(std::string_view("rt+1/=&x")));
    EXPECT_EQ(r.body.str(),
              "grant_type=refresh_token&refresh_token=rt%2B1%2F%3D%26x&scope=read+write");
    ASSERT_EQ(r.authorization.str().rfind("Basic ", 0), 0u);
    auto decoded = base64_decode(r.authorization.str().substr(6));
    ASSERT_TRUE(decoded);
    // Both parts are form-encoded before they are joined (RFC 6749 section 2.3.1).
    EXPECT_EQ(decoded->reveal(), "my+app:s3cr%3At%2FSENTINEL");
}

TEST(OAuth2Request, ClientCredentialsInTheBodyAndPublicClients) {
    OAuth2Client body{"app", SecretBytes(std::string_view("pw")), OAuth2Client::Auth::body, ""};
    OAuth2Request r = build_refresh_request(body, SecretBytes(std::string_view("rt")));
    EXPECT_EQ(r.body.str(),
              "grant_type=refresh_token&refresh_token=rt&client_id=app&client_secret=pw");
    EXPECT_TRUE(r.authorization.str().empty());

    OAuth2Client pub{"app", std::nullopt, OAuth2Client::Auth::basic, ""};
    r = build_refresh_request(pub, SecretBytes(std::string_view("rt")));
    EXPECT_EQ(r.body.str(), "grant_type=refresh_token&refresh_token=rt&client_id=app");
    EXPECT_TRUE(r.authorization.str().empty());
}

TEST(OAuth2Response, ASuccessGivesTheValueExpiryAndRotatedRefreshToken) {
    auto outcome = interpret_token_response(
        200,
        R"({"access_token":"at-SENTINEL","token_type":"Bearer","expires_in":3,
            "refresh_token":"rt-SENTINEL-2","scope":"read"})",
        std::nullopt, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(outcome));
    const auto &s = std::get<RefreshSuccess>(outcome);
    EXPECT_EQ(s.value.reveal(), "at-SENTINEL");
    ASSERT_TRUE(s.refresh);
    EXPECT_EQ(s.refresh->reveal(), "rt-SENTINEL-2");
    EXPECT_EQ(s.expires_in, std::chrono::seconds(3));
    EXPECT_EQ(s.metadata.at("token_type"), "Bearer");
    EXPECT_EQ(s.metadata.at("scope"), "read");
}

TEST(OAuth2Response, WithoutRefreshTokenTheOldOneStaysAndWithoutExpiryTheDefaultApplies) {
    auto outcome = interpret_token_response(200, R"({"access_token":"at","expires_in":"60"})",
                                            std::nullopt, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(outcome));
    EXPECT_FALSE(std::get<RefreshSuccess>(outcome).refresh);
    EXPECT_EQ(std::get<RefreshSuccess>(outcome).expires_in, std::chrono::seconds(60));
    outcome = interpret_token_response(200, R"({"access_token":"at"})", std::nullopt, 1h);
    EXPECT_EQ(std::get<RefreshSuccess>(outcome).expires_in, std::chrono::hours(1));
}

TEST(OAuth2Response, InvalidGrantIsFinalAndSaysANewLoginIsNeeded) {
    auto outcome = interpret_token_response(
        400, R"({"error":"invalid_grant","error_description":"grant request is invalid"})",
        std::nullopt, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshFailure>(outcome));
    const auto &f = std::get<RefreshFailure>(outcome);
    EXPECT_EQ(f.action, FailureAction::give_up);
    EXPECT_NE(f.reason.find("invalid_grant"), std::string::npos) << f.reason;
    EXPECT_NE(f.reason.find("a new login is needed"), std::string::npos) << f.reason;
    EXPECT_NE(f.reason.find("HTTP 400"), std::string::npos) << f.reason;
}

TEST(OAuth2Response, RetryableAndFinalFailures) {
    auto action = [](int status, std::string_view body) {
        auto o = interpret_token_response(status, body, 30s, 1h);
        EXPECT_TRUE(std::holds_alternative<RefreshFailure>(o)) << status << " " << body;
        return std::get<RefreshFailure>(o).action;
    };
    EXPECT_EQ(action(503, ""), FailureAction::retry);
    EXPECT_EQ(action(500, "<html>oops</html>"), FailureAction::retry);
    EXPECT_EQ(action(429, R"({"error":"slow_down"})"), FailureAction::retry);
    EXPECT_EQ(action(401, R"({"error":"invalid_client"})"), FailureAction::give_up);
    EXPECT_EQ(action(400, R"({"error":"unsupported_grant_type"})"), FailureAction::give_up);
    EXPECT_EQ(action(403, ""), FailureAction::give_up);
    // A 200 that is not a token response is retried: a proxy page, a truncated body.
    EXPECT_EQ(action(200, "<html>"), FailureAction::retry);
    EXPECT_EQ(action(200, "[]"), FailureAction::retry);
    EXPECT_EQ(action(200, R"({"token_type":"Bearer"})"), FailureAction::retry);
    EXPECT_EQ(action(200, R"({"access_token":"a","expires_in":"-"})"), FailureAction::retry);
    EXPECT_EQ(action(200, R"({"access_token":"a","refresh_token":7})"), FailureAction::retry);
    auto o = interpret_token_response(429, "", 30s, 1h);
    EXPECT_EQ(std::get<RefreshFailure>(o).retry_after, std::chrono::seconds(30));
}

TEST(OAuth2Response, ALifetimeThatHasEndedIsReadAsOneWithItsRefreshToken) {
    // The provider refuses to publish it; the rotated refresh token must survive.
    auto o = interpret_token_response(
        200,
        R"({"access_token":"kt-SENTINEL-a","expires_in":-30,"refresh_token":"kt-SENTINEL-r2"})",
        std::nullopt, 1h);
    ASSERT_TRUE(std::holds_alternative<RefreshSuccess>(o));
    const auto &s = std::get<RefreshSuccess>(o);
    EXPECT_EQ(s.expires_in, -30s);
    ASSERT_TRUE(s.refresh);
    EXPECT_EQ(s.refresh->reveal(), "kt-SENTINEL-r2");
}

TEST(OAuth2Response, MessagesNeverQuoteTokens) {
    const char *bodies[] = {
        R"({"access_token":"kt-SENTINEL-a","expires_in":"soon"})",
        R"({"access_token":"kt-SENTINEL-a","refresh_token":""})",
        R"({"error":"invalid_grant","refresh_token":"kt-SENTINEL-r"})",
        R"({"access_token":"kt-SENTINEL-a",)",
    };
    for (const char *body : bodies) {
        for (int status : {200, 400}) {
            auto o = interpret_token_response(status, body, std::nullopt, 1h);
            if (auto *f = std::get_if<RefreshFailure>(&o)) {
                EXPECT_EQ(f->reason.find(kMarker), std::string::npos) << f->reason;
            }
        }
    }
}

}  // namespace
}  // namespace keyturn
