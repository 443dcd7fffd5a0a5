#include "core/secret.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <type_traits>

#include "core/json_support.hpp"

namespace keyturn {
namespace {

template <class T>
concept Streamable = requires(std::ostream &os, const T &t) {
    os << t;
};

TEST(SecretBytes, CannotBeStreamed) {
    static_assert(!Streamable<SecretBytes>);
    static_assert(!std::is_convertible_v<SecretBytes, std::string>);
    static_assert(!std::is_convertible_v<SecretBytes, std::string_view>);
}

TEST(SecretBytes, KeepsEmbeddedNulBytes) {
    const char raw[] = {'a', '\0', 'b', '\0'};
    SecretBytes s(raw, sizeof raw);
    ASSERT_EQ(s.size(), 4u);
    EXPECT_EQ(s.reveal(), std::string_view(raw, 4));
}

TEST(SecretBytes, FingerprintIsFirstEightHexDigitsOfSha256) {
    // SHA-256("abc") = ba7816bf...
    EXPECT_EQ(SecretBytes(std::string_view("abc")).fingerprint(), "ba7816bf");
    EXPECT_EQ(fingerprint_of(""), "e3b0c442");
}

TEST(SecretBytes, MoveLeavesSourceEmptyAndClearEmpties) {
    SecretBytes a(std::string_view("kt-secret-SENTINEL-move"));
    SecretBytes b(std::move(a));
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(b.reveal(), "kt-secret-SENTINEL-move");
    b.clear();
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(b.data(), nullptr);
}

TEST(SecretBytes, ComparesByContent) {
    EXPECT_EQ(SecretBytes(std::string_view("x")), SecretBytes(std::string_view("x")));
    EXPECT_FALSE(SecretBytes(std::string_view("x")) == SecretBytes(std::string_view("y")));
}

TEST(Cleanse, OverwritesMemory) {
    std::string text = "kt-secret-SENTINEL-cleanse";
    cleanse(text);
    EXPECT_EQ(text, std::string(text.size(), '\0'));
}

TEST(Base64, RoundTripsBinary) {
    for (std::size_t n = 0; n < 20; ++n) {
        std::string bytes;
        for (std::size_t i = 0; i < n; ++i)
            bytes.push_back(static_cast<char>(i * 37 + 1));
        auto decoded = base64_decode(base64_encode(bytes));
        ASSERT_TRUE(decoded.has_value()) << n;
        EXPECT_EQ(decoded->reveal(), bytes) << n;
    }
    EXPECT_FALSE(base64_decode("abc").has_value());
    EXPECT_FALSE(base64_decode("a*c=").has_value());
}

TEST(Utf8, AcceptsValidAndRejectsInvalid) {
    EXPECT_TRUE(is_utf8("plain"));
    EXPECT_TRUE(is_utf8(std::string_view("a\0b", 3)));
    EXPECT_TRUE(is_utf8("caf\xc3\xa9"));
    EXPECT_FALSE(is_utf8("\xff"));
    EXPECT_FALSE(is_utf8("\xc0\x80"));
    EXPECT_FALSE(is_utf8("\xe2\x82"));
}

}  // namespace
}  // namespace keyturn
