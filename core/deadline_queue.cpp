#include "core/deadline_queue.hpp"

namespace keyturn {

void DeadlineQueue::reserve(std::size_t slots) {
    heap_.reserve(slots);
    position_.reserve(slots);
}

bool DeadlineQueue::contains(Slot slot) const {
    return slot < position_.size() && position_[slot] != kAbsent;
}

std::optional<TimePoint> DeadlineQueue::deadline_of(Slot slot) const {
    if (!contains(slot)) return std::nullopt;
    return heap_[position_[slot]].when;
}

std::optional<TimePoint> DeadlineQueue::earliest() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.front().when;
}

void DeadlineQueue::schedule(Slot slot, TimePoint when) {
    if (slot >= position_.size()) position_.resize(slot + 1, kAbsent);
    Entry entry{when, next_order_++, slot};

    if (position_[slot] == kAbsent) {
        heap_.push_back(entry);
        position_[slot] = static_cast<std::uint32_t>(heap_.size() - 1);
        sift_up(heap_.size() - 1);
        return;
    }
    const std::size_t index = position_[slot];
    const bool earlier = before(entry, heap_[index]);
    heap_[index] = entry;
    if (earlier) {
        sift_up(index);
    } else {
        sift_down(index);
    }
}

void DeadlineQueue::cancel(Slot slot) {
    if (contains(slot)) remove_at(position_[slot]);
}

std::optional<DeadlineQueue::Slot> DeadlineQueue::pop_due(TimePoint now) {
    if (heap_.empty() || heap_.front().when > now) return std::nullopt;
    Slot slot = heap_.front().slot;
    remove_at(0);
    return slot;
}

void DeadlineQueue::place(std::size_t index, Entry entry) {
    position_[entry.slot] = static_cast<std::uint32_t>(index);
    heap_[index] = entry;
}

void DeadlineQueue::sift_up(std::size_t index) {
    Entry entry = heap_[index];
    while (index > 0) {
        std::size_t parent = (index - 1) / 2;
        if (!before(entry, heap_[parent])) break;
        place(index, heap_[parent]);
        index = parent;
    }
    place(index, entry);
}

void DeadlineQueue::sift_down(std::size_t index) {
    Entry entry = heap_[index];
    const std::size_t n = heap_.size();
    for (;;) {
        std::size_t child = 2 * index + 1;
        if (child >= n) break;
        if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
        if (!before(heap_[child], entry)) break;
        place(index, heap_[child]);
        index = child;
    }
    place(index, entry);
}

void DeadlineQueue::remove_at(std::size_t index) {
    position_[heap_[index].slot] = kAbsent;
    Entry last = heap_.back();
    heap_.pop_back();
    if (index == heap_.size()) return;

    heap_[index] = last;
    position_[last.slot] = static_cast<std::uint32_t>(index);
    if (index > 0 && before(last, heap_[(index - 1) / 2])) {
        sift_up(index);
    } else {
        sift_down(index);
    }
}

}  // namespace keyturn
