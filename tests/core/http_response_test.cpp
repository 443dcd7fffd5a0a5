#include <gtest/gtest.h>

#include <string>

#include "core/http_response.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

// 2015-10-21 07:28:00 UTC.
const TimePoint kNow = TimePoint(std::chrono::seconds(1445412480));

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

HttpUrl url_of(std::string_view text) {
    std::string error;
    auto url = parse_http_url(text, &error);
    EXPECT_TRUE(url) << error;
    return url.value_or(HttpUrl{});
}

std::string url_error(std::string_view text) {
    std::string error;
    EXPECT_FALSE(parse_http_url(text, &error));
    return error;
}

// ---- URLs

TEST(HttpUrl, SplitsSchemeHostPortAndTarget) {
    HttpUrl url = url_of("https://Auth.Example.com:8443/oauth/token?a=1");
    EXPECT_TRUE(url.tls);
    EXPECT_EQ(url.host, "auth.example.com");
    EXPECT_EQ(url.port, 8443);
    EXPECT_EQ(url.target, "/oauth/token?a=1");
    EXPECT_EQ(url.host_header(), "auth.example.com:8443");
}

TEST(HttpUrl, DefaultsPortAndPath) {
    HttpUrl http = url_of("http://127.0.0.1");
    EXPECT_FALSE(http.tls);
    EXPECT_EQ(http.port, 80);
    EXPECT_EQ(http.target, "/");
    EXPECT_EQ(http.host_header(), "127.0.0.1");

    HttpUrl https = url_of("HTTPS://example.com?x=1#frag");
    EXPECT_EQ(https.port, 443);
    EXPECT_EQ(https.target, "/?x=1");
}

TEST(HttpUrl, AcceptsBracketedIpv6Literals) {
    HttpUrl url = url_of("http://[::1]:8080/token");
    EXPECT_EQ(url.host, "::1");
    EXPECT_TRUE(url.ipv6_literal());
    EXPECT_EQ(url.host_header(), "[::1]:8080");
    EXPECT_EQ(url.endpoint(), "http://[::1]:8080/token");
}

TEST(HttpUrl, RejectsOtherSchemesAndMalformedParts) {
    EXPECT_TRUE(contains(url_error("ftp://example.com/"), "scheme must be http or https"));
    EXPECT_TRUE(contains(url_error("example.com/token"), "not an absolute"));
    EXPECT_TRUE(contains(url_error("http:///token"), "host is empty"));
    EXPECT_TRUE(contains(url_error("http://exa mple.com/"), "whitespace"));
    EXPECT_TRUE(contains(url_error("http://example.com:0/"), "port"));
    EXPECT_TRUE(contains(url_error("http://example.com:65536/"), "port"));
    EXPECT_TRUE(contains(url_error("http://example.com:/"), "port"));
    EXPECT_TRUE(contains(url_error("http://example.com:80a/"), "port"));
    EXPECT_TRUE(contains(url_error("http://[::1/"), "IPv6"));
    EXPECT_TRUE(contains(url_error("http://[zz::1]/"), "IPv6"));
    EXPECT_TRUE(contains(url_error("http://ex$ample.com/"), "host"));
}

TEST(HttpUrl, RejectsUserInformationWithoutQuotingIt) {
    const std::string error = url_error("https://client:hunter2@example.com/token");
    EXPECT_TRUE(contains(error, "user information"));
    EXPECT_FALSE(contains(error, "hunter2"));
}

TEST(HttpUrl, EndpointDropsTheQuery) {
    HttpUrl url = url_of("https://example.com/token?client_secret=s3cr3t");
    EXPECT_EQ(url.endpoint(), "https://example.com:443/token");
    EXPECT_EQ(describe_exchange("POST", url), "POST https://example.com:443/token");
}

// ---- Retry-After

TEST(HttpRetryAfter, ReadsDeltaSeconds) {
    EXPECT_EQ(parse_retry_after("120", kNow), Duration(120s));
    EXPECT_EQ(parse_retry_after(" 0 ", kNow), Duration(0s));
}

TEST(HttpRetryAfter, ReadsAllThreeDateForms) {
    EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", kNow), Duration(30s));
    EXPECT_EQ(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", kNow), Duration(60s));
    EXPECT_EQ(parse_retry_after("Wed Oct 21 07:28:05 2015", kNow), Duration(5s));
    EXPECT_EQ(parse_retry_after("Sat Oct  3 07:28:00 2015", kNow), Duration::zero());
}

TEST(HttpRetryAfter, APastDateMeansNow) {
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", kNow), Duration::zero());
}

TEST(HttpRetryAfter, CapsAbsurdWaitsAtOneDay) {
    EXPECT_EQ(parse_retry_after("999999999999999999999999", kNow), kMaxRetryAfter);
    EXPECT_EQ(parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", kNow), kMaxRetryAfter);
}

TEST(HttpRetryAfter, RejectsGarbage) {
    for (const char *value : {"", "soon", "-5", "1.5", "12 s", "Wed, 32 Oct 2015 07:28:30 GMT",
                              "Wed, 21 Oct 2015 25:28:30 GMT", "Wed, 21 Foo 2015 07:28:30 GMT",
                              "Wed, 21 Oct 2015 07:28:30 UTC", "Wed, 29 Feb 2015 07:28:30 GMT"}) {
        EXPECT_FALSE(parse_retry_after(value, kNow)) << value;
    }
}

// ---- Status classes

TEST(HttpStatus, TwoHundredsSucceed) {
    for (int status : {200, 201, 204}) {
        HttpStatusVerdict v = classify_http_status(status, {}, kNow);
        EXPECT_EQ(v.kind, HttpErrorKind::none);
        EXPECT_FALSE(v.retryable);
    }
}

TEST(HttpStatus, RedirectsAreRefusedAndNotRetried) {
    for (int status : {301, 302, 303, 307, 308}) {
        HttpStatusVerdict v = classify_http_status(status, {{"Location", "/x"}}, kNow);
        EXPECT_EQ(v.kind, HttpErrorKind::redirect);
        EXPECT_FALSE(v.retryable);
    }
}

TEST(HttpStatus, ClientErrorsAreNotRetried) {
    for (int status : {400, 401, 403, 404, 409, 422}) {
        HttpStatusVerdict v = classify_http_status(status, {{"Retry-After", "5"}}, kNow);
        EXPECT_EQ(v.kind, HttpErrorKind::http_status);
        EXPECT_FALSE(v.retryable) << status;
        EXPECT_FALSE(v.retry_after) << status;
    }
}

TEST(HttpStatus, ServerErrorsAreRetried) {
    for (int status : {500, 502, 503, 504, 599}) {
        EXPECT_TRUE(classify_http_status(status, {}, kNow).retryable) << status;
    }
}

TEST(HttpStatus, TooManyRequestsAndUnavailableHonourRetryAfter) {
    HttpStatusVerdict v429 = classify_http_status(429, {{"retry-after", "7"}}, kNow);
    EXPECT_TRUE(v429.retryable);
    EXPECT_EQ(v429.retry_after, Duration(7s));

    HttpStatusVerdict v503 =
        classify_http_status(503, {{"Retry-After", "Wed, 21 Oct 2015 07:30:00 GMT"}}, kNow);
    EXPECT_TRUE(v503.retryable);
    EXPECT_EQ(v503.retry_after, Duration(120s));

    HttpStatusVerdict garbage = classify_http_status(429, {{"Retry-After", "later"}}, kNow);
    EXPECT_TRUE(garbage.retryable);
    EXPECT_FALSE(garbage.retry_after);

    // Other 5xx statuses do not get a hint from the header.
    EXPECT_FALSE(classify_http_status(500, {{"Retry-After", "7"}}, kNow).retry_after);
}

TEST(HttpStatus, ResultMessagesNameEndpointStatusAndWait) {
    HttpUrl url = url_of("https://127.0.0.1:8443/token?refresh_token=abc");
    HttpResult r = make_http_response("POST", url, 503, {{"Retry-After", "4"}},
                                      ScrubbedString("{\"token\":\"abc\"}"), kNow);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.error,
              "POST https://127.0.0.1:8443/token: HTTP 503 (Service Unavailable); retry after 4s");
    EXPECT_EQ(r.body.str(), "{\"token\":\"abc\"}");  // the caller may read the error body

    HttpResult redirect = make_http_response("POST", url, 302, {}, ScrubbedString(), kNow);
    EXPECT_EQ(redirect.error,
              "POST https://127.0.0.1:8443/token: HTTP 302 (Found): redirect refused");

    HttpResult ok = make_http_response("GET", url, 200, {}, ScrubbedString("x"), kNow);
    EXPECT_TRUE(ok.ok());
    EXPECT_TRUE(ok.error.empty());
}

// ---- Transport failures

TEST(HttpFailure, TransportFailuresAreRetryableButCertificatesAreNot) {
    for (HttpErrorKind kind :
         {HttpErrorKind::timeout, HttpErrorKind::connection, HttpErrorKind::truncated_body,
          HttpErrorKind::malformed_response, HttpErrorKind::connect, HttpErrorKind::resolve,
          HttpErrorKind::tls_handshake}) {
        EXPECT_TRUE(http_error_retryable(kind)) << http_error_kind_name(kind);
    }
    for (HttpErrorKind kind :
         {HttpErrorKind::tls_verify, HttpErrorKind::tls_setup, HttpErrorKind::invalid_request,
          HttpErrorKind::redirect, HttpErrorKind::body_too_large, HttpErrorKind::shut_down}) {
        EXPECT_FALSE(http_error_retryable(kind)) << http_error_kind_name(kind);
    }
}

TEST(HttpFailure, TruncatedBodiesSayHowFarTheyGot) {
    EXPECT_EQ(describe_truncation("connection reset", 120, 512),
              "connection reset after 120 of 512 body bytes");
    EXPECT_EQ(describe_truncation("connection closed", 7, std::nullopt),
              "connection closed after 7 body bytes");

    HttpUrl url = url_of("http://localhost:8080/token?code=xyz");
    HttpResult r = make_http_failure("POST", url, HttpErrorKind::truncated_body,
                                     describe_truncation("connection reset", 120, 512));
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(r.error,
              "POST http://localhost:8080/token: connection reset after 120 of 512 body bytes");
}

TEST(HttpFailure, FormatsSecondsForMessages) {
    EXPECT_EQ(format_seconds(5s), "5s");
    EXPECT_EQ(format_seconds(250ms), "0.25s");
    EXPECT_EQ(format_seconds(1500ms), "1.5s");
    EXPECT_EQ(format_seconds(24h), "86400s");
}

// ---- JSON bodies

TEST(HttpJsonBody, ParsesAnObject) {
    HttpJsonBody body = parse_json_object_body(R"({"access_token":"tok","expires_in":60})");
    ASSERT_TRUE(body.object) << body.error;
    EXPECT_EQ(body.object->at("access_token").as_string(), "tok");
    EXPECT_TRUE(body.error.empty());
}

TEST(HttpJsonBody, NamesWhatIsWrongWithoutQuotingValues) {
    HttpJsonBody empty = parse_json_object_body("  ");
    EXPECT_EQ(empty.error, "response body is empty");
    EXPECT_TRUE(empty.retryable);

    HttpJsonBody bad = parse_json_object_body(R"({"access_token":"s3cr3t-value" "x"})");
    EXPECT_FALSE(bad.object);
    EXPECT_TRUE(contains(bad.error, "not valid JSON")) << bad.error;
    EXPECT_TRUE(contains(bad.error, "at byte")) << bad.error;
    EXPECT_FALSE(contains(bad.error, "s3cr3t")) << bad.error;
    EXPECT_TRUE(bad.retryable);

    HttpJsonBody cut = parse_json_object_body(R"({"access_token":"s3cr3t)");
    EXPECT_TRUE(contains(cut.error, "not valid JSON")) << cut.error;
    EXPECT_FALSE(contains(cut.error, "s3cr3t")) << cut.error;

    HttpJsonBody array = parse_json_object_body(R"(["s3cr3t"])");
    EXPECT_EQ(array.error, "response body is a JSON array, not an object");

    HttpJsonBody html = parse_json_object_body("<html>502 Bad Gateway</html>");
    EXPECT_TRUE(contains(html.error, "not valid JSON")) << html.error;
}

}  // namespace
}  // namespace keyturn
