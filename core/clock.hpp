#pragma once
// Time in keyturn is wall-clock time: credentials expire at an instant that servers
// state in unix time. A Clock interface lets tests drive the engine with a manual
// clock and never sleep.

#include <atomic>
#include <chrono>

namespace keyturn {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;

inline constexpr TimePoint kNever = TimePoint::max();

class Clock {
  public:
    virtual ~Clock() = default;

    // The current time.
    virtual TimePoint now() const noexcept = 0;

    // True when `deadline` has certainly not passed yet. It may answer false for a
    // deadline that is still a little ahead (the caller then asks now()), never
    // true for one that has passed. Lets the read path skip a precise clock read.
    virtual bool surely_before(TimePoint deadline) const noexcept { return now() < deadline; }

    // True for a clock that only moves when a test moves it: the engine then arms
    // no real timer and a test drives it with Engine::poll().
    virtual bool is_manual() const noexcept { return false; }
};

class SystemClock final : public Clock {
  public:
    TimePoint now() const noexcept override;
    bool surely_before(TimePoint deadline) const noexcept override;
};

class ManualClock final : public Clock {
  public:
    explicit ManualClock(TimePoint start = TimePoint(std::chrono::seconds(1'700'000'000)))
        : now_(start.time_since_epoch().count()) {}

    TimePoint now() const noexcept override {
        return TimePoint(Duration(now_.load(std::memory_order_acquire)));
    }
    bool is_manual() const noexcept override { return true; }

    void advance(Duration by) noexcept { now_.fetch_add(by.count(), std::memory_order_acq_rel); }
    void set(TimePoint to) noexcept {
        now_.store(to.time_since_epoch().count(), std::memory_order_release);
    }

  private:
    std::atomic<Duration::rep> now_;
};

// Seconds since the unix epoch, as the JSON that crosses the ABI carries times.
inline double to_unix_seconds(TimePoint t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}
inline TimePoint from_unix_seconds(double s) {
    return TimePoint(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s)));
}
inline Duration seconds_to_duration(double s) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}
inline double to_seconds(Duration d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace keyturn
