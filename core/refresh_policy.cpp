#include "core/refresh_policy.hpp"

#include <algorithm>
#include <cmath>

namespace keyturn {

namespace {
Duration scale(Duration d, double factor) {
    return std::chrono::duration_cast<Duration>(
        std::chrono::duration<double, std::nano>(static_cast<double>(d.count()) * factor));
}
}  // namespace

Duration effective_lead(const RefreshPolicy &policy, Duration lifetime) {
    if (policy.lead) return *policy.lead;
    return std::min<Duration>(std::chrono::seconds(60), lifetime / 10);
}

TimePoint next_refresh(const RefreshPolicy &policy, TimePoint issued, TimePoint expires,
                       TimePoint now, double random01) {
    if (expires <= issued) return now;
    const Duration lifetime = expires - issued;
    const TimePoint latest = std::max(issued, expires - effective_lead(policy, lifetime));

    const double offset = policy.refresh_at + policy.jitter * (2.0 * random01 - 1.0);
    TimePoint target = issued + scale(lifetime, std::clamp(offset, 0.0, 1.0));
    target = std::clamp(target, issued, latest);
    return std::max(target, now);
}

Duration backoff_delay(const BackoffPolicy &backoff, int failures, double random01) {
    const int exponent = std::clamp(failures, 1, 64) - 1;
    const double growth = std::pow(std::max(backoff.multiplier, 1.0), exponent);
    const double max_ns = static_cast<double>(backoff.max.count());
    double base = std::min(static_cast<double>(backoff.initial.count()) * growth, max_ns);
    double stretched = std::min(base * (1.0 + backoff.jitter * random01), max_ns);
    return Duration(static_cast<Duration::rep>(stretched));
}

TimePoint retry_at(const RefreshPolicy &policy, TimePoint now, std::optional<TimePoint> expires,
                   int failures, double random01, std::optional<TimePoint> not_before) {
    TimePoint at = now + backoff_delay(policy.backoff, failures, random01);
    if (expires && *expires > now && at >= *expires) {
        // The last chance before expiry: halfway to it, at most a second before it.
        Duration remaining = *expires - now;
        Duration margin = std::min<Duration>(std::chrono::seconds(1), remaining / 2);
        at = std::max(*expires - margin, now + policy.backoff.initial);
    }
    if (not_before && *not_before > at) at = *not_before;
    return at;
}

}  // namespace keyturn
