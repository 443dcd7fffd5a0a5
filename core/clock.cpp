#include "core/clock.hpp"

#include <time.h>

namespace keyturn {

namespace {
Duration from_timespec(const timespec &ts) {
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
}  // namespace

SystemClock::SystemClock() {
    timespec res{};
    // The coarse clock is read without a system call and is a few milliseconds
    // behind at most; its resolution says how far.
    if (clock_getres(CLOCK_REALTIME_COARSE, &res) == 0) {
        coarse_resolution_ = from_timespec(res);
    } else {
        coarse_resolution_ = std::chrono::milliseconds(10);
    }
}

TimePoint SystemClock::now() const noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return TimePoint(from_timespec(ts));
}

TimePoint SystemClock::now_for_expiry() const noexcept {
    timespec ts{};
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0) return now();
    // Add the resolution so the result is never earlier than the precise time.
    return TimePoint(from_timespec(ts) + coarse_resolution_);
}

}  // namespace keyturn
