#include "core/http_response.hpp"

#include <boost/json/stream_parser.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "core/json_support.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return lower(x) == lower(y); });
}

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

bool is_host_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
           c == '.' || c == '_';
}

std::optional<HttpUrl> url_error(std::string *error, const char *why) {
    if (error != nullptr) *error = std::string("invalid URL: ") + why;
    return std::nullopt;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// ---- HTTP-date (RFC 9110, section 5.6.7)

// Reads a fixed number of digits; false when any is missing.
bool read_digits(std::string_view &s, int count, int &out) {
    if (s.size() < static_cast<std::size_t>(count)) return false;
    out = 0;
    for (int i = 0; i < count; ++i) {
        if (!is_digit(s[i])) return false;
        out = out * 10 + (s[i] - '0');
    }
    s.remove_prefix(count);
    return true;
}

bool read_literal(std::string_view &s, std::string_view literal) {
    if (s.substr(0, literal.size()) != literal) return false;
    s.remove_prefix(literal.size());
    return true;
}

bool read_month(std::string_view &s, int &month) {
    static constexpr std::array<std::string_view, 12> names = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; ++i) {
        if (read_literal(s, names[i])) {
            month = i + 1;
            return true;
        }
    }
    return false;
}

bool read_weekday(std::string_view &s, bool long_form) {
    static constexpr std::array<std::string_view, 7> names = {
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
    for (std::string_view name : names) {
        if (read_literal(s, long_form ? name : name.substr(0, 3))) return true;
    }
    return false;
}

bool read_time(std::string_view &s, int &hour, int &minute, int &second) {
    return read_digits(s, 2, hour) && read_literal(s, ":") && read_digits(s, 2, minute) &&
           read_literal(s, ":") && read_digits(s, 2, second) && hour < 24 && minute < 60 &&
           second < 61;  // 60: a leap second
}

// Days from 1970-01-01 to the given civil date (proleptic Gregorian calendar).
std::int64_t days_from_civil(std::int64_t y, int m, int d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const std::int64_t yoe = y - era * 400;
    const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int days_in_month(int year, int month) {
    static constexpr std::array<int, 12> days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

std::optional<std::int64_t> parse_http_date(std::string_view s) {
    int day = 0, month = 0, year = 0, hour = 0, minute = 0, second = 0;
    std::string_view rest = s;
    bool parsed = false;

    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    if (read_weekday(rest, false) && read_literal(rest, ", ") && read_digits(rest, 2, day) &&
        read_literal(rest, " ") && read_month(rest, month) && read_literal(rest, " ") &&
        read_digits(rest, 4, year) && read_literal(rest, " ") &&
        read_time(rest, hour, minute, second) && rest == " GMT") {
        parsed = true;
    }
    // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT. A two-digit year is taken as 1970-2069.
    rest = s;
    if (!parsed && read_weekday(rest, true) && read_literal(rest, ", ") &&
        read_digits(rest, 2, day) && read_literal(rest, "-") && read_month(rest, month) &&
        read_literal(rest, "-") && read_digits(rest, 2, year) && read_literal(rest, " ") &&
        read_time(rest, hour, minute, second) && rest == " GMT") {
        year += year < 70 ? 2000 : 1900;
        parsed = true;
    }
    // asctime: Sun Nov  6 08:49:37 1994
    rest = s;
    if (!parsed && read_weekday(rest, false) && read_literal(rest, " ") &&
        read_month(rest, month) && read_literal(rest, " ")) {
        if (!rest.empty() && rest.front() == ' ') {
            rest.remove_prefix(1);
            parsed = read_digits(rest, 1, day);
        } else {
            parsed = read_digits(rest, 2, day);
        }
        parsed = parsed && read_literal(rest, " ") && read_time(rest, hour, minute, second) &&
                 read_literal(rest, " ") && read_digits(rest, 4, year) && rest.empty();
    }
    if (!parsed || month < 1 || day < 1 || day > days_in_month(year, month)) return std::nullopt;
    return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

const char *reason_phrase(int status) {
    switch (status) {
        case 300:
            return "Multiple Choices";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 303:
            return "See Other";
        case 304:
            return "Not Modified";
        case 307:
            return "Temporary Redirect";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 413:
            return "Content Too Large";
        case 415:
            return "Unsupported Media Type";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        default:
            return nullptr;
    }
}

const char *json_kind_name(json::kind k) {
    switch (k) {
        case json::kind::array:
            return "a JSON array";
        case json::kind::string:
            return "a JSON string";
        case json::kind::bool_:
            return "a JSON boolean";
        case json::kind::null:
            return "JSON null";
        default:
            return "a JSON number";
    }
}

}  // namespace

// ---------------------------------------------------------------------------------
// URLs

std::string HttpUrl::host_header() const {
    std::string out = ipv6_literal() ? "[" + host + "]" : host;
    if (port != (tls ? 443 : 80)) out += ":" + std::to_string(port);
    return out;
}

std::string HttpUrl::endpoint() const {
    std::string out(scheme());
    out += "://";
    out += ipv6_literal() ? "[" + host + "]" : host;
    out += ":" + std::to_string(port);
    out.append(target, 0, target.find('?'));
    return out;
}

std::optional<HttpUrl> parse_http_url(std::string_view text, std::string *error) {
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) {
            return url_error(error, "contains whitespace, a control or a non-ASCII character");
        }
    }
    HttpUrl url;
    const std::size_t colon = text.find("://");
    if (colon == std::string_view::npos) return url_error(error, "not an absolute http(s) URL");
    const std::string_view scheme = text.substr(0, colon);
    if (iequals(scheme, "https")) {
        url.tls = true;
    } else if (!iequals(scheme, "http")) {
        return url_error(error, "the scheme must be http or https");
    }
    text.remove_prefix(colon + 3);

    const std::size_t authority_end = text.find_first_of("/?#");
    std::string_view authority = text.substr(0, authority_end);
    text.remove_prefix(authority.size());
    if (authority.find('@') != std::string_view::npos) {
        return url_error(error, "user information (user:password@) is not allowed");
    }

    std::string_view port_text;
    bool has_port = false;
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) return url_error(error, "unterminated IPv6 literal");
        const std::string literal(authority.substr(1, close - 1));
        in6_addr ignored;
        if (::inet_pton(AF_INET6, literal.c_str(), &ignored) != 1) {
            return url_error(error, "malformed IPv6 literal");
        }
        url.host = literal;
        std::transform(url.host.begin(), url.host.end(), url.host.begin(), lower);
        authority.remove_prefix(close + 1);
        if (!authority.empty()) {
            if (authority.front() != ':') return url_error(error, "malformed host");
            has_port = true;
            port_text = authority.substr(1);
        }
    } else {
        const std::size_t port_colon = authority.find(':');
        const std::string_view host = authority.substr(0, port_colon);
        if (host.empty()) return url_error(error, "the host is empty");
        if (!std::all_of(host.begin(), host.end(), is_host_char) || host.front() == '.' ||
            host.front() == '-') {
            return url_error(error, "the host has characters a host name cannot have");
        }
        url.host.assign(host);
        std::transform(url.host.begin(), url.host.end(), url.host.begin(), lower);
        if (port_colon != std::string_view::npos) {
            has_port = true;
            port_text = authority.substr(port_colon + 1);
        }
    }
    if (has_port) {
        if (port_text.empty() || port_text.size() > 5 ||
            !std::all_of(port_text.begin(), port_text.end(), is_digit)) {
            return url_error(error, "the port must be a number from 1 to 65535");
        }
        const int port = std::stoi(std::string(port_text));
        if (port < 1 || port > 65535) {
            return url_error(error, "the port must be a number from 1 to 65535");
        }
        url.port = static_cast<std::uint16_t>(port);
    } else {
        url.port = url.tls ? 443 : 80;
    }

    text = text.substr(0, text.find('#'));
    url.target = text.empty() || text.front() != '/' ? "/" : "";
    url.target.append(text);
    return url;
}

std::optional<std::string_view> find_header(const HttpHeaders &headers, std::string_view name) {
    for (const auto &[key, value] : headers) {
        if (iequals(key, name)) return std::string_view(value);
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------
// Classification

const char *http_error_kind_name(HttpErrorKind kind) noexcept {
    switch (kind) {
        case HttpErrorKind::none:
            return "none";
        case HttpErrorKind::invalid_request:
            return "invalid_request";
        case HttpErrorKind::tls_setup:
            return "tls_setup";
        case HttpErrorKind::resolve:
            return "resolve";
        case HttpErrorKind::connect:
            return "connect";
        case HttpErrorKind::tls_verify:
            return "tls_verify";
        case HttpErrorKind::tls_handshake:
            return "tls_handshake";
        case HttpErrorKind::timeout:
            return "timeout";
        case HttpErrorKind::connection:
            return "connection";
        case HttpErrorKind::truncated_body:
            return "truncated_body";
        case HttpErrorKind::malformed_response:
            return "malformed_response";
        case HttpErrorKind::body_too_large:
            return "body_too_large";
        case HttpErrorKind::redirect:
            return "redirect";
        case HttpErrorKind::http_status:
            return "http_status";
        case HttpErrorKind::shut_down:
            return "shut_down";
    }
    return "unknown";
}

bool http_error_retryable(HttpErrorKind kind) noexcept {
    switch (kind) {
        case HttpErrorKind::resolve:
        case HttpErrorKind::connect:
        case HttpErrorKind::tls_handshake:
        case HttpErrorKind::timeout:
        case HttpErrorKind::connection:
        case HttpErrorKind::truncated_body:
        case HttpErrorKind::malformed_response:
            return true;
        // A certificate, a redirect, a body over the cap or a bad request stay as they
        // are until someone changes something; the caller gives up or asks a human.
        default:
            return false;
    }
}

std::optional<Duration> parse_retry_after(std::string_view value, TimePoint now) {
    value = trim(value);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), is_digit)) {
        std::int64_t seconds = 0;
        for (char c : value) {
            seconds = seconds * 10 + (c - '0');
            if (seconds > std::chrono::duration_cast<std::chrono::seconds>(kMaxRetryAfter).count())
                return kMaxRetryAfter;
        }
        return std::chrono::seconds(seconds);
    }
    const auto at = parse_http_date(value);
    if (!at) return std::nullopt;
    const auto wait = std::chrono::seconds(*at) - now.time_since_epoch();
    if (wait <= Duration::zero()) return Duration::zero();
    return std::min<Duration>(wait, kMaxRetryAfter);
}

HttpStatusVerdict classify_http_status(int status, const HttpHeaders &headers, TimePoint now) {
    HttpStatusVerdict verdict;
    if (status >= 200 && status < 300) return verdict;
    if (status >= 300 && status < 400) {
        verdict.kind = HttpErrorKind::redirect;
        return verdict;
    }
    verdict.kind = HttpErrorKind::http_status;
    verdict.retryable = status == 408 || status == 429 || (status >= 500 && status < 600);
    if (status == 429 || status == 503) {
        if (auto value = find_header(headers, "Retry-After")) {
            verdict.retry_after = parse_retry_after(*value, now);
        }
    }
    return verdict;
}

std::string format_seconds(Duration d) {
    const double s = to_seconds(d);
    char buffer[48];
    if (d.count() % 1'000'000'000 == 0) {
        std::snprintf(buffer, sizeof buffer, "%llds",
                      static_cast<long long>(d.count() / 1'000'000'000));
    } else {
        std::snprintf(buffer, sizeof buffer, "%.3f", s);
        std::string text = buffer;
        while (text.back() == '0')
            text.pop_back();
        if (text.back() == '.') text.pop_back();
        return text + "s";
    }
    return buffer;
}

std::string describe_exchange(std::string_view method, const HttpUrl &url) {
    std::string out(method);
    out += ' ';
    out += url.endpoint();
    return out;
}

HttpResult make_http_failure(std::string_view method, const HttpUrl &url, HttpErrorKind kind,
                             std::string_view cause) {
    HttpResult result;
    result.kind = kind;
    result.retryable = http_error_retryable(kind);
    result.error = describe_exchange(method, url);
    result.error += ": ";
    result.error += cause;
    return result;
}

HttpResult make_http_response(std::string_view method, const HttpUrl &url, int status,
                              HttpHeaders headers, ScrubbedString body, TimePoint now) {
    HttpResult result;
    const HttpStatusVerdict verdict = classify_http_status(status, headers, now);
    result.kind = verdict.kind;
    result.status = status;
    result.retryable = verdict.retryable;
    result.retry_after = verdict.retry_after;
    result.headers = std::move(headers);
    result.body = std::move(body);
    if (verdict.kind == HttpErrorKind::none) return result;

    result.error = describe_exchange(method, url) + ": HTTP " + std::to_string(status);
    if (const char *reason = reason_phrase(status)) {
        result.error += " (";
        result.error += reason;
        result.error += ')';
    }
    if (verdict.kind == HttpErrorKind::redirect) result.error += ": redirect refused";
    if (verdict.retry_after)
        result.error += "; retry after " + format_seconds(*verdict.retry_after);
    return result;
}

std::string describe_truncation(std::string_view how, std::size_t received,
                                std::optional<std::uint64_t> expected) {
    std::string out(how);
    out += " after " + std::to_string(received);
    if (expected) out += " of " + std::to_string(*expected);
    out += " body bytes";
    return out;
}

// ---------------------------------------------------------------------------------
// JSON bodies

HttpJsonBody parse_json_object_body(std::string_view body) {
    HttpJsonBody out;
    auto fail = [&out](std::string why) {
        out.error = std::move(why);
        out.retryable = true;
        return std::move(out);
    };
    if (trim(body).empty()) return fail("response body is empty");

    json::parse_options options;
    options.max_depth = 64;
    json::stream_parser parser(scrubbing_storage(), options);
    parser.reset(scrubbing_storage());
    boost::system::error_code ec;
    const std::size_t used = parser.write(body.data(), body.size(), ec);
    if (!ec) parser.finish(ec);
    if (ec) {
        std::string why = "response body is not valid JSON (" + ec.message();
        why += used < body.size() ? " at byte " + std::to_string(used) : " at the end";
        return fail(why + ")");
    }
    json::value value = parser.release();
    if (!value.is_object()) {
        return fail(std::string("response body is ") + json_kind_name(value.kind()) +
                    ", not an object");
    }
    out.object.emplace(std::move(value.as_object()));
    return out;
}

std::string tidy_server_text(std::string_view text, std::size_t max) {
    std::string out;
    for (char c : text.substr(0, max)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f || c == '"') ? ' ' : c;
    }
    if (text.size() > max) out += "...";
    return out;
}

}  // namespace keyturn
