#include "core/refresh_policy.hpp"

#include <gtest/gtest.h>

namespace keyturn {
namespace {

using namespace std::chrono_literals;

const TimePoint t0 = TimePoint(std::chrono::seconds(1'700'000'000));

RefreshPolicy no_jitter() {
    RefreshPolicy p;
    p.jitter = 0;
    return p;
}

TEST(RefreshPolicy, RefreshesAtTwoThirdsOfTheLifetimeByDefault) {
    EXPECT_EQ(next_refresh(no_jitter(), t0, t0 + 300s, t0, 0.5), t0 + 200s);
}

TEST(RefreshPolicy, NeverSchedulesLaterThanTheLeadBeforeExpiry) {
    RefreshPolicy p = no_jitter();
    p.refresh_at = 0.95;
    // Lifetime one hour: the default lead is 60 s, so 0.95 (3420 s) is fine...
    EXPECT_EQ(next_refresh(p, t0, t0 + 3600s, t0, 0.5), t0 + 3420s);
    // ...but with a 1000 s lifetime 0.95 would be 950 s, past expiry - 60 s.
    EXPECT_EQ(next_refresh(p, t0, t0 + 1000s, t0, 0.5), t0 + 940s);
}

TEST(RefreshPolicy, DefaultLeadIsTheSmallerOfSixtySecondsAndATenthOfTheLifetime) {
    EXPECT_EQ(effective_lead(RefreshPolicy{}, 100s), 10s);
    EXPECT_EQ(effective_lead(RefreshPolicy{}, 3600s), 60s);
    RefreshPolicy p;
    p.lead = 5s;
    EXPECT_EQ(effective_lead(p, 3600s), 5s);
}

TEST(RefreshPolicy, JitterStaysWithinItsBoundsAndInsideTheWindow) {
    RefreshPolicy p;  // refresh_at 2/3, jitter 0.1
    const Duration lifetime = 3000s;
    const TimePoint expires = t0 + lifetime;
    TimePoint lowest = kNever, highest = TimePoint::min();
    for (int i = 0; i < 1000; ++i) {
        double r = i / 1000.0;
        TimePoint at = next_refresh(p, t0, expires, t0, r);
        lowest = std::min(lowest, at);
        highest = std::max(highest, at);
        EXPECT_GE(at, t0 + 1700s);  // (2/3 - 0.1) * 3000 = 1700
        EXPECT_LE(at, t0 + 2300s);  // (2/3 + 0.1) * 3000 = 2300
        EXPECT_LE(at, expires - 60s);
    }
    // The draws really spread the moment out.
    EXPECT_LT(lowest, t0 + 1710s);
    EXPECT_GT(highest, t0 + 2290s);
}

TEST(RefreshPolicy, JitterIsClampedToTheLeadWindow) {
    RefreshPolicy p;
    p.refresh_at = 0.9;
    p.jitter = 0.5;
    for (double r : {0.0, 0.5, 0.999}) {
        TimePoint at = next_refresh(p, t0, t0 + 100s, t0, r);
        EXPECT_GE(at, t0);
        EXPECT_LE(at, t0 + 90s) << r;  // expiry - lead (10 s)
    }
}

TEST(RefreshPolicy, NeverSchedulesBeforeNow) {
    const TimePoint late = t0 + 250s;
    EXPECT_EQ(next_refresh(no_jitter(), t0, t0 + 300s, late, 0.5), late);
}

TEST(RefreshPolicy, AnAlreadyExpiredValueRefreshesNow) {
    EXPECT_EQ(next_refresh(no_jitter(), t0, t0, t0 + 5s, 0.5), t0 + 5s);
}

TEST(Backoff, GrowsByTheMultiplierAndStopsAtTheCap) {
    BackoffPolicy b;  // 1 s, x2, 5 min
    b.jitter = 0;
    EXPECT_EQ(backoff_delay(b, 1, 0.0), 1s);
    EXPECT_EQ(backoff_delay(b, 2, 0.0), 2s);
    EXPECT_EQ(backoff_delay(b, 5, 0.0), 16s);
    EXPECT_EQ(backoff_delay(b, 9, 0.0), 256s);
    EXPECT_EQ(backoff_delay(b, 10, 0.0), 300s);
    EXPECT_EQ(backoff_delay(b, 1000, 0.0), 300s);
}

TEST(Backoff, JitterOnlyLengthensAndNeverPassesTheCap) {
    BackoffPolicy b;
    b.jitter = 0.2;
    for (int failures = 1; failures < 12; ++failures) {
        for (double r : {0.0, 0.3, 0.999}) {
            Duration base =
                backoff_delay(BackoffPolicy{b.initial, b.multiplier, b.max, 0}, failures, 0);
            Duration d = backoff_delay(b, failures, r);
            EXPECT_GE(d, base);
            EXPECT_LE(d, b.max);
            EXPECT_LE(d, base * 1.2 + 1ns);
        }
    }
}

TEST(Backoff, RetryIsNeverFasterThanTheBackoff) {
    RefreshPolicy p;
    p.backoff.jitter = 0;
    // Expiry far away: the retry is exactly the backoff.
    EXPECT_EQ(retry_at(p, t0, t0 + 3600s, 3, 0.0), t0 + 4s);
}

TEST(Backoff, RetryIsNeverScheduledPastExpiryWhileTimeRemains) {
    RefreshPolicy p;
    p.backoff.jitter = 0;
    // Backoff after 6 failures is 32 s; the value expires in 10 s: one last chance
    // a second before expiry.
    TimePoint at = retry_at(p, t0, t0 + 10s, 6, 0.0);
    EXPECT_EQ(at, t0 + 9s);
    EXPECT_LT(at, t0 + 10s);
    // Expiry 3 s away: halfway would be 1.5 s, a second before is 2 s.
    EXPECT_EQ(retry_at(p, t0, t0 + 3s, 6, 0.0), t0 + 2s);
}

TEST(Backoff, TheLastChanceIsNoSoonerThanTheInitialBackoff) {
    RefreshPolicy p;
    p.backoff.jitter = 0;
    // 0.4 s left: a retry inside that would hammer; the initial backoff wins.
    EXPECT_EQ(retry_at(p, t0, t0 + 400ms, 4, 0.0), t0 + 1s);
}

TEST(Backoff, AfterExpiryRetriesFollowTheBackoff) {
    RefreshPolicy p;
    p.backoff.jitter = 0;
    EXPECT_EQ(retry_at(p, t0, t0 - 5s, 4, 0.0), t0 + 8s);
    EXPECT_EQ(retry_at(p, t0, std::nullopt, 4, 0.0), t0 + 8s);
}

TEST(Backoff, HonoursAServersRetryAfter) {
    RefreshPolicy p;
    p.backoff.jitter = 0;
    EXPECT_EQ(retry_at(p, t0, std::nullopt, 1, 0.0, t0 + 30s), t0 + 30s);
    // A Retry-After shorter than the backoff does not make it faster.
    EXPECT_EQ(retry_at(p, t0, std::nullopt, 3, 0.0, t0 + 1s), t0 + 4s);
}

}  // namespace
}  // namespace keyturn
