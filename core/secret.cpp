#include "core/secret.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cstring>

namespace keyturn {

void cleanse(void *data, std::size_t size) noexcept {
    if (data != nullptr && size != 0) OPENSSL_cleanse(data, size);
}

SecretBytes::SecretBytes(const void *data, std::size_t size) {
    if (size == 0) return;
    data_ = std::make_unique_for_overwrite<char[]>(size);
    std::memcpy(data_.get(), data, size);
    size_ = size;
}

SecretBytes::SecretBytes(SecretBytes &&other) noexcept
    : data_(std::move(other.data_)), size_(other.size_) {
    other.size_ = 0;
}

SecretBytes &SecretBytes::operator=(const SecretBytes &other) {
    if (this != &other) *this = SecretBytes(other);
    return *this;
}

SecretBytes &SecretBytes::operator=(SecretBytes &&other) noexcept {
    if (this != &other) {
        clear();
        data_ = std::move(other.data_);
        size_ = other.size_;
        other.size_ = 0;
    }
    return *this;
}

SecretBytes::~SecretBytes() {
    clear();
}

void SecretBytes::clear() noexcept {
    cleanse(data_.get(), size_);
    data_.reset();
    size_ = 0;
}

std::string SecretBytes::fingerprint() const {
    return fingerprint_of(reveal());
}

bool operator==(const SecretBytes &a, const SecretBytes &b) noexcept {
    return a.size_ == b.size_ && CRYPTO_memcmp(a.data(), b.data(), a.size_) == 0;
}

std::string fingerprint_of(std::string_view bytes) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size(), digest);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(8, '0');
    for (int i = 0; i < 4; ++i) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    return out;
}

}  // namespace keyturn
