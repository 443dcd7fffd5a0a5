#pragma once
// When to refresh a credential, and when to try again after a failure. Pure
// functions of their arguments: the caller supplies the time and the random draw,
// so every rule is tested without a clock.

#include <optional>

#include "core/clock.hpp"

namespace keyturn {

struct BackoffPolicy {
    Duration initial = std::chrono::seconds(1);
    double multiplier = 2.0;
    Duration max = std::chrono::minutes(5);
    // Each delay is stretched by up to this fraction, never shortened.
    double jitter = 0.2;
    bool operator==(const BackoffPolicy &) const = default;
};

struct RefreshPolicy {
    // Refresh after this fraction of the lifetime has passed (Vault's renewer uses
    // about two thirds).
    double refresh_at = 2.0 / 3.0;
    // Refresh no later than this long before expiry. Unset: the smaller of 60 s and
    // a tenth of the lifetime.
    std::optional<Duration> lead;
    // The refresh moment moves by up to +/- this fraction of the lifetime, so that a
    // fleet started at once spreads out. Clamped inside [issued, expiry - lead].
    double jitter = 0.1;
    BackoffPolicy backoff;
    bool operator==(const RefreshPolicy &) const = default;
};

// The lead time that applies to a value living `lifetime`.
Duration effective_lead(const RefreshPolicy &policy, Duration lifetime);

// When to refresh a value issued at `issued` and expiring at `expires`. `random01`
// is a uniform draw in [0, 1). The result lies in [issued, expires - lead] (or at
// `issued` when the lifetime is shorter than the lead) and is never before `now`.
TimePoint next_refresh(const RefreshPolicy &policy, TimePoint issued, TimePoint expires,
                       TimePoint now, double random01);

// The delay before retry number `failures` (1 for the first failure): initial *
// multiplier^(failures-1), capped at max, then stretched by up to `jitter`, capped
// at max again. Never shorter than the un-jittered backoff unless max cuts it.
Duration backoff_delay(const BackoffPolicy &backoff, int failures, double random01);

// When to retry after `failures` consecutive failures at `now`. While a valid value
// remains (`expires` in the future), a retry that the backoff would place past the
// expiry is pulled in to just before it — one last chance — but never sooner than
// the initial backoff. `not_before` (a server's Retry-After) is honoured when set.
TimePoint retry_at(const RefreshPolicy &policy, TimePoint now, std::optional<TimePoint> expires,
                   int failures, double random01, std::optional<TimePoint> not_before = {});

}  // namespace keyturn
