#pragma once
// SecretBytes owns every sensitive value in keyturn: access tokens, refresh tokens,
// passwords. Its memory is overwritten when released, it cannot be streamed or
// formatted, and where a human needs to tell two values apart it offers a
// fingerprint: the first 8 hex digits of the value's SHA-256.

#include <cstddef>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace keyturn {

class SecretBytes {
  public:
    SecretBytes() noexcept = default;
    SecretBytes(const void *data, std::size_t size);
    explicit SecretBytes(std::string_view text) : SecretBytes(text.data(), text.size()) {}
    SecretBytes(const SecretBytes &other) : SecretBytes(other.data(), other.size()) {}
    SecretBytes(SecretBytes &&other) noexcept;
    SecretBytes &operator=(const SecretBytes &other);
    SecretBytes &operator=(SecretBytes &&other) noexcept;
    ~SecretBytes();

    const char *data() const noexcept { return data_.get(); }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }

    // The bytes, for the few places that must hand them on (a hook request, a store
    // file, a reader's buffer). The name makes every such place easy to find.
    std::string_view reveal() const noexcept { return {data_.get(), size_}; }

    std::string fingerprint() const;
    void clear() noexcept;

    friend bool operator==(const SecretBytes &a, const SecretBytes &b) noexcept;

  private:
    std::unique_ptr<char[]> data_;
    std::size_t size_ = 0;
};

// No streaming, formatting or implicit conversion to text: a secret that reaches a
// log line must have been revealed on purpose.
std::ostream &operator<<(std::ostream &, const SecretBytes &) = delete;

// Fingerprint of arbitrary bytes, as SecretBytes::fingerprint().
std::string fingerprint_of(std::string_view bytes);

// Overwrites memory in a way the compiler cannot elide.
void cleanse(void *data, std::size_t size) noexcept;
inline void cleanse(std::string &text) noexcept {
    cleanse(text.data(), text.size());
}

// A std::string for text that may hold secrets (JSON carrying a token); it is
// overwritten when it goes out of scope.
class ScrubbedString {
  public:
    ScrubbedString() = default;
    explicit ScrubbedString(std::string text) : text_(std::move(text)) {}
    ScrubbedString(const ScrubbedString &) = delete;
    ScrubbedString &operator=(const ScrubbedString &) = delete;
    // Moving leaves nothing behind: a short string lives inside the object itself, so
    // the source's buffer is overwritten too.
    ScrubbedString(ScrubbedString &&other) noexcept : text_(std::move(other.text_)) {
        cleanse(other.text_.data(), other.text_.capacity());
    }
    ScrubbedString &operator=(ScrubbedString &&other) noexcept {
        if (this != &other) {
            cleanse(text_.data(), text_.capacity());
            text_ = std::move(other.text_);
            cleanse(other.text_.data(), other.text_.capacity());
        }
        return *this;
    }
    ~ScrubbedString() { cleanse(text_.data(), text_.capacity()); }
    std::string &str() noexcept { return text_; }
    const std::string &str() const noexcept { return text_; }

  private:
    std::string text_;
};

}  // namespace keyturn
