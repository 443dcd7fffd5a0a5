#pragma once
// One priority queue of deadlines for every credential of an engine. Entries are
// keyed by a dense slot number; add, cancel and reschedule are O(log n), and the
// earliest deadline is O(1). It is plain data with no clock and no locking: the
// engine owns it under its mutex and arms one timer at earliest().

#include <cstdint>
#include <optional>
#include <vector>

#include "core/clock.hpp"

namespace keyturn {

class DeadlineQueue {
  public:
    using Slot = std::uint32_t;

    // Sets the deadline of `slot`, adding it if absent.
    void schedule(Slot slot, TimePoint when);
    // Removes `slot`; does nothing if it is absent.
    void cancel(Slot slot);

    bool contains(Slot slot) const;
    std::optional<TimePoint> deadline_of(Slot slot) const;
    std::optional<TimePoint> earliest() const;

    // Removes and returns the slot with the earliest deadline if that deadline is at
    // or before `now`. Ties go to the slot scheduled first.
    std::optional<Slot> pop_due(TimePoint now);

    std::size_t size() const noexcept { return heap_.size(); }
    bool empty() const noexcept { return heap_.empty(); }
    void reserve(std::size_t slots);

  private:
    struct Entry {
        TimePoint when;
        std::uint64_t order;  // breaks ties first-scheduled-first
        Slot slot;
    };
    static constexpr std::uint32_t kAbsent = UINT32_MAX;

    bool before(const Entry &a, const Entry &b) const noexcept {
        return a.when < b.when || (a.when == b.when && a.order < b.order);
    }
    void place(std::size_t index, Entry entry);
    void sift_up(std::size_t index);
    void sift_down(std::size_t index);
    void remove_at(std::size_t index);

    std::vector<Entry> heap_;
    std::vector<std::uint32_t> position_;  // slot -> index in heap_, or kAbsent
    std::uint64_t next_order_ = 0;
};

}  // namespace keyturn
