#include "core/clock.hpp"

#include <time.h>

namespace keyturn {

// CLOCK_REALTIME is read through the vDSO without a system call where the clock
// source allows (TSC). The coarse clock is cheaper still but may lag by more than
// its stated resolution on virtual machines, which would let a read return a
// value a few milliseconds after it expired; it is not used.
TimePoint SystemClock::now() const noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return TimePoint(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

}  // namespace keyturn
