#pragma once
// A Snapshot is one immutable state of a credential: the value and everything known
// about it. The engine publishes a new snapshot with an atomic pointer swap, so
// readers never wait for a refresh.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "core/secret.hpp"

namespace keyturn {

using Metadata = std::map<std::string, std::string, std::less<>>;

struct Snapshot {
    SecretBytes value;
    // Material that produces the next value, such as an OAuth2 refresh token.
    std::optional<SecretBytes> refresh;
    TimePoint issued_at{};
    TimePoint expires_at{};
    bool renewable = false;
    std::optional<Duration> max_lifetime;
    std::uint64_t version = 0;
    Metadata metadata;
};

}  // namespace keyturn
