#pragma once
// JSON as keyturn reads and writes it: a memory resource that overwrites what it
// frees (parsed hook results hold tokens), readers that collect every mistake with
// its JSON path, and base64 for values that are not UTF-8.

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/secret.hpp"

namespace keyturn {

// A memory resource for JSON documents that carry secrets: every block is
// overwritten before it is returned to the heap.
boost::json::storage_ptr scrubbing_storage();

// Parses text that may carry secrets into scrubbing storage. Throws Error(config)
// with `what` and the parser's reason on malformed text.
boost::json::value parse_secret_json(std::string_view text, std::string_view what);

// Serializes a value that carries secrets; the text is overwritten when the
// ScrubbedString goes out of scope.
void serialize_into(ScrubbedString &out, const boost::json::value &value);

// A place in a JSON document, such as credentials[2].policy.jitter. Built as a
// chain of small values on the stack and turned into text only when a mistake is
// reported, so that reading a valid document allocates nothing for paths. A path
// refers to its parent: it must not outlive it.
class JsonPath {
  public:
    JsonPath() = default;  // the root of the document
    JsonPath(const JsonPath &parent, std::string_view key) : parent_(&parent), key_(key) {}
    JsonPath(const JsonPath &parent, std::size_t index)
        : parent_(&parent), index_(index), is_index_(true) {}
    std::string str() const;

  private:
    const JsonPath *parent_ = nullptr;
    std::string_view key_;
    std::size_t index_ = 0;
    bool is_index_ = false;
};

// Collects every mistake in a document as "path: what was expected".
class JsonErrors {
  public:
    void add(const JsonPath &path, const std::string &message) { add(path.str(), message); }
    void add(const std::string &path, const std::string &message);
    bool empty() const noexcept { return messages_.empty(); }
    // All mistakes, one per line.
    std::string text() const;
    const std::vector<std::string> &lines() const noexcept { return messages_; }

  private:
    std::vector<std::string> messages_;
};

// Field readers. Each returns nothing when the key is absent or wrong; when wrong it
// also records an error at the field's path.
class ObjectReader {
  public:
    ObjectReader(const boost::json::value &value, const JsonPath &path, JsonErrors &errors);
    // The reader keeps a reference to `path`: a temporary would dangle.
    ObjectReader(const boost::json::value &value, JsonPath &&path, JsonErrors &errors) = delete;

    bool valid() const noexcept { return object_ != nullptr; }
    const JsonPath &path() const noexcept { return path_; }
    bool has(std::string_view key) const;

    // Records "unknown key" for every key not in `allowed`.
    void allow_only(std::initializer_list<std::string_view> allowed);

    const boost::json::value *raw(std::string_view key) const;
    std::optional<std::string> string(std::string_view key, bool required = false);
    std::optional<double> number(std::string_view key, double min, double max,
                                 const std::string &expected);
    std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
    std::optional<bool> boolean(std::string_view key);
    std::optional<Duration> duration(std::string_view key, Duration min, Duration max);

    JsonErrors &errors() noexcept { return errors_; }

  private:
    const boost::json::object *object_;
    const JsonPath &path_;
    JsonErrors &errors_;
};

// Reads the plain subset of JSON that configurations nearly always are, without
// building a document: objects, arrays, strings without escapes, numbers without an
// exponent, true, false and null. It never reports a mistake; it answers "not
// plain" (false), and the caller then parses the text with Boost.JSON, whose
// messages are the ones users see. Whatever it accepts, Boost.JSON accepts with the
// same meaning.
class PlainJson {
  public:
    explicit PlainJson(std::string_view text) noexcept
        : p_(text.data()), begin_(text.data()), end_(text.data() + text.size()) {}

    // True when nothing but whitespace is left.
    bool at_end() noexcept {
        skip_space();
        return p_ == end_;
    }
    // Consumes `c` after whitespace, if it comes next.
    bool consume(char c) noexcept {
        skip_space();
        if (p_ == end_ || *p_ != c) return false;
        ++p_;
        return true;
    }
    // A string without escapes, as a view into the text.
    bool string(std::string_view &out) noexcept { return scan_string(false, &out); }
    // A number; false for one with an exponent, a sign or many digits. The value is
    // the one Boost.JSON gives (fractions are converted by Boost.JSON itself).
    bool number(double &out) {
        skip_space();
        return scan_number(&out);
    }
    bool boolean(bool &out) noexcept;

    // Reads an object, calling `member(key)` after each key and its colon; the call
    // reads the value. Stops at the first false.
    template <class Member>
    bool object(Member &&member) {
        if (!consume('{')) return false;
        if (consume('}')) return true;
        for (;;) {
            std::string_view key;
            if (!string(key) || !consume(':') || !member(key)) return false;
            if (consume(',')) continue;
            return consume('}');
        }
    }

    // Skips one value of any kind, escapes in strings allowed (except \u), and
    // returns its text. `depth` bounds nesting far below Boost.JSON's limit.
    bool skip(std::string_view &out, int depth = 32) noexcept;

    // Where reading stands, as an offset into the text.
    std::size_t offset() const noexcept { return static_cast<std::size_t>(p_ - begin_); }

  private:
    void skip_space() noexcept {
        // Nothing above the space character is whitespace: one test in the usual case.
        while (p_ != end_ && static_cast<unsigned char>(*p_) <= ' ' &&
               (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t'))
            ++p_;
    }
    bool scan_string(bool escapes, std::string_view *out) noexcept;
    bool scan_number(double *out);
    bool skip_value(int depth) noexcept;
    bool literal(std::string_view word) noexcept;

    const char *p_;
    const char *begin_;
    const char *end_;
};

std::string base64_encode(std::string_view bytes);
// Returns nothing for text that is not base64.
std::optional<SecretBytes> base64_decode(std::string_view text);

// A secret as a member of a JSON object: "key" when it is UTF-8, else "key_base64".
void put_secret(boost::json::object &o, std::string_view key, const SecretBytes &s);
// Reads what put_secret wrote; nothing when neither key is present. Throws
// Error(store) naming `where` when the member is malformed.
std::optional<SecretBytes> get_secret(const boost::json::object &o, std::string_view key,
                                      std::string_view where);

// True when the bytes are valid UTF-8, so they can travel in a JSON string.
bool is_utf8(std::string_view bytes) noexcept;
// The length of the valid UTF-8 sequence at the start of `bytes`, or 0.
std::size_t utf8_sequence(std::string_view bytes) noexcept;

}  // namespace keyturn
