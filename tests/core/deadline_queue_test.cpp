#include "core/deadline_queue.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace keyturn {
namespace {

using namespace std::chrono_literals;
const TimePoint t0 = TimePoint(std::chrono::seconds(1'000));

TEST(DeadlineQueue, PopsInDeadlineOrder) {
    DeadlineQueue q;
    q.schedule(3, t0 + 3s);
    q.schedule(1, t0 + 1s);
    q.schedule(2, t0 + 2s);
    EXPECT_EQ(q.earliest(), t0 + 1s);
    EXPECT_EQ(q.pop_due(t0 + 10s), 1u);
    EXPECT_EQ(q.pop_due(t0 + 10s), 2u);
    EXPECT_EQ(q.pop_due(t0 + 10s), 3u);
    EXPECT_FALSE(q.pop_due(t0 + 10s));
}

TEST(DeadlineQueue, PopsNothingBeforeItsTime) {
    DeadlineQueue q;
    q.schedule(7, t0 + 5s);
    EXPECT_FALSE(q.pop_due(t0 + 4999ms));
    EXPECT_EQ(q.pop_due(t0 + 5s), 7u);
}

TEST(DeadlineQueue, TiesGoToTheFirstScheduled) {
    DeadlineQueue q;
    for (DeadlineQueue::Slot s : {5u, 2u, 9u})
        q.schedule(s, t0);
    EXPECT_EQ(q.pop_due(t0), 5u);
    EXPECT_EQ(q.pop_due(t0), 2u);
    EXPECT_EQ(q.pop_due(t0), 9u);
}

TEST(DeadlineQueue, CancelRemovesOnlyThatSlot) {
    DeadlineQueue q;
    q.schedule(1, t0 + 1s);
    q.schedule(2, t0 + 2s);
    q.cancel(1);
    q.cancel(42);  // absent: nothing happens
    EXPECT_FALSE(q.contains(1));
    EXPECT_EQ(q.size(), 1u);
    EXPECT_EQ(q.pop_due(t0 + 5s), 2u);
}

TEST(DeadlineQueue, RescheduleMovesEarlierAndLater) {
    DeadlineQueue q;
    q.schedule(1, t0 + 1s);
    q.schedule(2, t0 + 2s);
    q.schedule(1, t0 + 3s);
    EXPECT_EQ(q.earliest(), t0 + 2s);
    q.schedule(1, t0 + 500ms);
    EXPECT_EQ(q.earliest(), t0 + 500ms);
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(q.deadline_of(2), t0 + 2s);
}

TEST(DeadlineQueue, AgreesWithAReferenceOverManyRandomOperations) {
    DeadlineQueue q;
    std::map<DeadlineQueue::Slot, TimePoint> reference;
    std::mt19937 rng(7);
    for (int i = 0; i < 100'000; ++i) {
        DeadlineQueue::Slot slot = rng() % 5000;
        switch (rng() % 4) {
            case 0:
            case 1: {
                TimePoint when = t0 + std::chrono::milliseconds(rng() % 100'000);
                q.schedule(slot, when);
                reference[slot] = when;
                break;
            }
            case 2:
                q.cancel(slot);
                reference.erase(slot);
                break;
            case 3: {
                auto popped = q.pop_due(t0 + 50s);
                TimePoint best = kNever;
                for (auto &[s, w] : reference)
                    best = std::min(best, w);
                if (best <= t0 + 50s) {
                    ASSERT_TRUE(popped.has_value());
                    EXPECT_EQ(reference.at(*popped), best);
                    reference.erase(*popped);
                } else {
                    EXPECT_FALSE(popped.has_value());
                }
                break;
            }
        }
        ASSERT_EQ(q.size(), reference.size());
    }
    TimePoint last = TimePoint::min();
    while (auto s = q.pop_due(kNever - 1s)) {
        EXPECT_GE(reference.at(*s), last);
        last = reference.at(*s);
        reference.erase(*s);
    }
    EXPECT_TRUE(reference.empty());
}

TEST(DeadlineQueue, HoldsAHundredThousandSlots) {
    DeadlineQueue q;
    q.reserve(100'000);
    for (DeadlineQueue::Slot s = 0; s < 100'000; ++s) {
        q.schedule(s, t0 + std::chrono::milliseconds((s * 7919) % 100'000));
    }
    EXPECT_EQ(q.size(), 100'000u);
    std::size_t popped = 0;
    TimePoint last = TimePoint::min();
    while (auto s = q.pop_due(t0 + 100s)) {
        TimePoint when = t0 + std::chrono::milliseconds((*s * 7919) % 100'000);
        EXPECT_GE(when, last);
        last = when;
        ++popped;
    }
    EXPECT_EQ(popped, 100'000u);
}

}  // namespace
}  // namespace keyturn
