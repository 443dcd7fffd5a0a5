#include "core/json_support.hpp"

// Boost.JSON's implementation, compiled into keyturn once (with hidden visibility),
// so the library needs no Boost shared object at run time.
#include <boost/json/src.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include "core/duration.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

// Each block carries its size in a header in front of it: Boost.JSON 1.81 does not
// always pass back the size it asked for (a parse that fails inside an object frees
// a key with another size), and scrubbing by the size it passes would then write past
// the block or leave part of it unscrubbed.
class ScrubbingResource final : public boost::container::pmr::memory_resource {
    static std::size_t header_for(std::size_t align) {
        return std::max<std::size_t>(align, alignof(std::max_align_t));
    }
    void *do_allocate(std::size_t bytes, std::size_t align) override {
        const std::size_t header = header_for(align);
        auto *base =
            static_cast<unsigned char *>(::operator new(header + bytes, std::align_val_t(header)));
        *reinterpret_cast<std::size_t *>(base) = bytes;
        return base + header;
    }
    void do_deallocate(void *p, std::size_t, std::size_t align) override {
        const std::size_t header = header_for(align);
        auto *base = static_cast<unsigned char *>(p) - header;
        const std::size_t bytes = *reinterpret_cast<std::size_t *>(base);
        cleanse(p, bytes);
        ::operator delete(base, header + bytes, std::align_val_t(header));
    }
    bool do_is_equal(const memory_resource &other) const noexcept override {
        return this == &other;
    }
};

}  // namespace

json::storage_ptr scrubbing_storage() {
    static ScrubbingResource resource;
    return json::storage_ptr(&resource);
}

json::value parse_secret_json(std::string_view text, std::string_view what) {
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = 64;
    json::value value = json::parse(text, ec, scrubbing_storage(), options);
    if (ec) {
        throw Error(Status::config, std::string(what) + ": not valid JSON (" + ec.message() + ")");
    }
    return value;
}

void serialize_into(ScrubbedString &out, const json::value &value) {
    json::serializer serializer;
    serializer.reset(&value);
    out.str().clear();
    char buffer[4096];
    while (!serializer.done()) {
        std::string_view piece = serializer.read(buffer, sizeof buffer);
        // Growing a std::string leaves its old block behind unscrubbed; reserve in
        // doubling steps and scrub the old block ourselves.
        std::string &s = out.str();
        if (s.size() + piece.size() > s.capacity()) {
            std::string bigger;
            bigger.reserve(std::max(s.capacity() * 2, s.size() + piece.size()));
            bigger.append(s);
            cleanse(s.data(), s.capacity());
            s.swap(bigger);
        }
        s.append(piece);
    }
    cleanse(buffer, sizeof buffer);
}

void JsonErrors::add(const std::string &path, const std::string &message) {
    messages_.push_back(path.empty() ? message : path + ": " + message);
}

std::string JsonErrors::text() const {
    std::string out;
    for (const auto &m : messages_) {
        if (!out.empty()) out += '\n';
        out += m;
    }
    return out;
}

std::string JsonPath::str() const {
    if (parent_ == nullptr) return {};
    std::string out = parent_->str();
    if (is_index_) return out + "[" + std::to_string(index_) + "]";
    // A key is shown as given, cut short when it is too long to be useful.
    if (!out.empty()) out += ".";
    out.append(key_.substr(0, 64));
    if (key_.size() > 64) out += "...";
    return out;
}

ObjectReader::ObjectReader(const json::value &value, const JsonPath &path, JsonErrors &errors)
    : object_(value.if_object()), path_(path), errors_(errors) {
    if (object_ == nullptr) errors_.add(path_, "expected an object");
}

bool ObjectReader::has(std::string_view key) const {
    return raw(key) != nullptr;
}

void ObjectReader::allow_only(std::initializer_list<std::string_view> allowed) {
    if (object_ == nullptr) return;
    for (const auto &item : *object_) {
        if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end()) {
            errors_.add(JsonPath(path_, item.key()), "unknown key");
        }
    }
}

const json::value *ObjectReader::raw(std::string_view key) const {
    if (object_ == nullptr) return nullptr;
    // The objects read here have a handful of keys: a plain scan beats the hashed
    // lookup of boost::json::object, which measured about 60 instructions a call.
    for (const auto &item : *object_) {
        if (item.key() == key) return &item.value();
    }
    return nullptr;
}

std::optional<std::string> ObjectReader::string(std::string_view key, bool required) {
    const json::value *v = raw(key);
    if (v == nullptr) {
        if (required && object_ != nullptr) errors_.add(JsonPath(path_, key), "is required");
        return std::nullopt;
    }
    if (!v->is_string()) {
        errors_.add(JsonPath(path_, key), "expected a string");
        return std::nullopt;
    }
    return std::string(v->get_string());
}

std::optional<double> ObjectReader::number(std::string_view key, double min, double max,
                                           const std::string &expected) {
    const json::value *v = raw(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) {
        errors_.add(JsonPath(path_, key), "expected " + expected);
        return std::nullopt;
    }
    double d = v->to_number<double>();
    if (!(d >= min && d <= max)) {
        errors_.add(JsonPath(path_, key), "expected " + expected);
        return std::nullopt;
    }
    return d;
}

std::optional<std::int64_t> ObjectReader::integer(std::string_view key, std::int64_t min,
                                                  std::int64_t max) {
    const json::value *v = raw(key);
    if (v == nullptr) return std::nullopt;
    std::string expected =
        "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    boost::system::error_code ec;
    std::int64_t n = v->is_number() ? v->to_number<std::int64_t>(ec) : 0;
    if (!v->is_number() || ec || n < min || n > max) {
        errors_.add(JsonPath(path_, key), expected);
        return std::nullopt;
    }
    return n;
}

std::optional<bool> ObjectReader::boolean(std::string_view key) {
    const json::value *v = raw(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_bool()) {
        errors_.add(JsonPath(path_, key), "expected true or false");
        return std::nullopt;
    }
    return v->get_bool();
}

std::optional<Duration> ObjectReader::duration(std::string_view key, Duration min, Duration max) {
    const json::value *v = raw(key);
    if (v == nullptr) return std::nullopt;
    std::optional<Duration> d;
    if (v->is_number()) {
        double s = v->to_number<double>();
        if (s >= 0 && s <= 100.0 * 365 * 86400) d = seconds_to_duration(s);
    } else if (v->is_string()) {
        d = parse_duration(v->get_string());
    }
    if (!d || *d < min || *d > max) {
        auto describe = [](Duration x) {
            std::string s = std::to_string(to_seconds(x));
            s.erase(s.find_last_not_of('0') + 1);
            if (!s.empty() && s.back() == '.') s.pop_back();
            return s + " s";
        };
        errors_.add(JsonPath(path_, key), "expected a duration from " + describe(min) + " to " +
                                              describe(max) +
                                              " (seconds, or text such as \"30s\", \"5m\")");
        return std::nullopt;
    }
    return d;
}

std::string base64_encode(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                            reinterpret_cast<const unsigned char *>(bytes.data()),
                            static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<SecretBytes> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    if (text.empty()) return SecretBytes();
    std::string out(3 * text.size() / 4, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                            reinterpret_cast<const unsigned char *>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    // EVP_DecodeBlock counts the padding as zero bytes; take them off.
    std::size_t size = static_cast<std::size_t>(n);
    if (text.back() == '=') --size;
    if (text.size() >= 2 && text[text.size() - 2] == '=') --size;
    SecretBytes result(out.data(), size);
    cleanse(out);
    return result;
}

std::size_t utf8_sequence(std::string_view bytes) noexcept {
    const auto *s = reinterpret_cast<const unsigned char *>(bytes.data());
    const std::size_t n = bytes.size();
    if (n == 0) return 0;
    const unsigned char c = s[0];
    const std::size_t len = c < 0x80           ? 1
                            : (c >> 5) == 0x6  ? 2
                            : (c >> 4) == 0xe  ? 3
                            : (c >> 3) == 0x1e ? 4
                                               : 0;
    if (len == 0 || len > n) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        if ((s[k] & 0xc0) != 0x80) return 0;
    }
    if (len == 2 && c < 0xc2) return 0;                   // overlong
    if (len == 3 && c == 0xe0 && s[1] < 0xa0) return 0;   // overlong
    if (len == 3 && c == 0xed && s[1] >= 0xa0) return 0;  // surrogate
    if (len == 4 && c == 0xf0 && s[1] < 0x90) return 0;   // overlong
    if (len == 4 && (c > 0xf4 || (c == 0xf4 && s[1] >= 0x90))) return 0;
    return len;
}

bool is_utf8(std::string_view bytes) noexcept {
    while (!bytes.empty()) {
        const std::size_t len = utf8_sequence(bytes);
        if (len == 0) return false;
        bytes.remove_prefix(len);
    }
    return true;
}

// --- PlainJson ---------------------------------------------------------------------

namespace {

// Bytes that stand for themselves in a JSON string: not a control character, quote,
// backslash or the start of a multi-byte sequence.
constexpr std::array<bool, 256> kPlainByte = [] {
    std::array<bool, 256> table{};
    for (int c = 0x20; c < 0x80; ++c)
        table[c] = c != '"' && c != '\\';
    return table;
}();

}  // namespace

bool PlainJson::scan_string(bool escapes, std::string_view *out) noexcept {
    skip_space();
    if (p_ == end_ || *p_ != '"') return false;
    const char *start = p_ + 1;
    const char *q = start;
    for (;;) {
        while (q != end_ && kPlainByte[static_cast<unsigned char>(*q)])
            ++q;
        if (q == end_) return false;
        const auto c = static_cast<unsigned char>(*q);
        if (c == '"') break;
        if (c < 0x20) return false;  // Boost.JSON refuses control characters
        if (c == '\\') {
            // Only escapes that stand for one ASCII character; \u brings surrogate rules.
            if (!escapes || end_ - q < 2) return false;
            switch (q[1]) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                    q += 2;
                    continue;
                default:
                    return false;
            }
        }
        const std::size_t len =
            utf8_sequence(std::string_view(q, static_cast<std::size_t>(end_ - q)));
        if (len == 0) return false;
        q += len;
    }
    if (out != nullptr) *out = std::string_view(start, static_cast<std::size_t>(q - start));
    p_ = q + 1;
    return true;
}

bool PlainJson::scan_number(double *out) {
    const char *start = p_;
    std::int64_t whole = 0;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
        // 15 digits stay exact in a double.
        if (p_ - start == 15) return false;
        whole = whole * 10 + (*p_ - '0');
        ++p_;
    }
    const std::size_t digits = static_cast<std::size_t>(p_ - start);
    if (digits == 0 || (digits > 1 && *start == '0')) return false;  // no leading zero
    if (p_ == end_ || (*p_ != '.' && *p_ != 'e' && *p_ != 'E')) {
        if (out != nullptr) *out = static_cast<double>(whole);
        return true;
    }
    if (*p_ != '.') return false;
    ++p_;
    const char *fraction = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9')
        ++p_;
    if (p_ == fraction || p_ - start > 64) return false;
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) return false;
    if (out == nullptr) return true;
    // Boost.JSON's own conversion, so that the value is the one the full parser
    // gives, to the last bit.
    unsigned char buffer[256];
    json::monotonic_resource arena(buffer, sizeof buffer);
    boost::system::error_code ec;
    const json::value v =
        json::parse(json::string_view(start, static_cast<std::size_t>(p_ - start)), ec, &arena);
    if (ec || !v.is_number()) return false;
    *out = v.to_number<double>();
    return true;
}

bool PlainJson::literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::string_view(p_, word.size()) != word) {
        return false;
    }
    p_ += word.size();
    return true;
}

bool PlainJson::boolean(bool &out) noexcept {
    skip_space();
    if (literal("true")) {
        out = true;
        return true;
    }
    if (literal("false")) {
        out = false;
        return true;
    }
    return false;
}

bool PlainJson::skip(std::string_view &out, int depth) noexcept {
    skip_space();
    const char *start = p_;
    if (!skip_value(depth)) return false;
    out = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
}

bool PlainJson::skip_value(int depth) noexcept {
    skip_space();
    if (p_ == end_ || depth <= 0) return false;
    switch (*p_) {
        case '"':
            return scan_string(true, nullptr);
        case '{':
            ++p_;
            if (consume('}')) return true;
            for (;;) {
                if (!scan_string(true, nullptr) || !consume(':') || !skip_value(depth - 1))
                    return false;
                if (consume(',')) continue;
                return consume('}');
            }
        case '[':
            ++p_;
            if (consume(']')) return true;
            for (;;) {
                if (!skip_value(depth - 1)) return false;
                if (consume(',')) continue;
                return consume(']');
            }
        case 't':
            return literal("true");
        case 'f':
            return literal("false");
        case 'n':
            return literal("null");
        default:
            if (*p_ == '-') ++p_;
            return scan_number(nullptr);
    }
}

void put_secret(json::object &o, std::string_view key, const SecretBytes &s) {
    if (is_utf8(s.reveal())) {
        o[key] = json::string(s.reveal(), o.storage());
    } else {
        std::string encoded = base64_encode(s.reveal());
        o[std::string(key) + "_base64"] = json::string(encoded, o.storage());
        cleanse(encoded);
    }
}

std::optional<SecretBytes> get_secret(const json::object &o, std::string_view key,
                                      std::string_view where) {
    if (const json::value *v = o.if_contains(key)) {
        if (!v->is_string()) {
            throw Error(Status::store,
                        std::string(where) + ": \"" + std::string(key) + "\" is not a string");
        }
        return SecretBytes(std::string_view(v->get_string()));
    }
    if (const json::value *v = o.if_contains(std::string(key) + "_base64")) {
        std::optional<SecretBytes> decoded;
        if (v->is_string()) decoded = base64_decode(v->get_string());
        if (!decoded) {
            throw Error(Status::store,
                        std::string(where) + ": \"" + std::string(key) + "_base64\" is not base64");
        }
        return decoded;
    }
    return std::nullopt;
}

}  // namespace keyturn
