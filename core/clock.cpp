#include "core/clock.hpp"

#include <time.h>

namespace keyturn {

namespace {
TimePoint read_clock(clockid_t id) noexcept {
    timespec ts{};
    clock_gettime(id, &ts);
    return TimePoint(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

// How far the coarse clock is trusted to lag behind the precise one. It is updated
// at every tick and its resolution is a tick (about 4 ms), but on a virtual
// machine it has been seen a few milliseconds further behind than that; a whole
// second is far beyond any lag short of a stalled machine.
constexpr Duration kCoarseLagBound = std::chrono::seconds(1);
}  // namespace

TimePoint SystemClock::now() const noexcept {
    return read_clock(CLOCK_REALTIME);
}

// A read of the precise clock costs tens of nanoseconds on some virtual machines,
// more than the rest of a value read together; the coarse clock costs a few. Far
// from the deadline the coarse clock answers; near it, the precise one decides.
bool SystemClock::surely_before(TimePoint deadline) const noexcept {
    if (read_clock(CLOCK_REALTIME_COARSE) + kCoarseLagBound < deadline) return true;
    return now() < deadline;
}

}  // namespace keyturn
