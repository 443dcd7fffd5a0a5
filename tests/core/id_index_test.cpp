#include "core/id_index.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace keyturn {
namespace {

class IdIndexTest : public ::testing::Test {
  protected:
    IdIndex::Slot add(const std::string &id) {
        auto slot = static_cast<IdIndex::Slot>(ids_.size());
        ids_.push_back(id);
        index_.insert(ids_.back(), slot);
        return slot;
    }
    // Ids live in a deque-like store that never moves them: the index keeps views.
    std::vector<std::string> ids_ = [] {
        std::vector<std::string> v;
        v.reserve(300'000);
        return v;
    }();
    IdIndex index_{[this](IdIndex::Slot s) { return std::string_view(ids_[s]); }};
};

TEST_F(IdIndexTest, FindsWhatWasInsertedAndNothingElse) {
    add("api");
    add("db");
    EXPECT_EQ(index_.find("api"), 0u);
    EXPECT_EQ(index_.find("db"), 1u);
    EXPECT_FALSE(index_.find("dc"));
    EXPECT_FALSE(index_.find(""));
    EXPECT_EQ(index_.size(), 2u);
}

TEST_F(IdIndexTest, EraseKeepsEveryOtherIdFindable) {
    for (int i = 0; i < 1000; ++i)
        add("c" + std::to_string(i));
    for (int i = 0; i < 1000; i += 3)
        index_.erase("c" + std::to_string(i));
    index_.erase("absent");
    for (int i = 0; i < 1000; ++i) {
        auto found = index_.find("c" + std::to_string(i));
        if (i % 3 == 0) {
            EXPECT_FALSE(found) << i;
        } else {
            EXPECT_EQ(found, static_cast<IdIndex::Slot>(i)) << i;
        }
    }
}

TEST_F(IdIndexTest, AgreesWithAReferenceOverRandomInsertsAndErases) {
    std::map<std::string, IdIndex::Slot> reference;
    std::mt19937 rng(11);
    for (int step = 0; step < 200'000; ++step) {
        std::string id = "k" + std::to_string(rng() % 20'000);
        if (rng() % 3 != 0) {
            if (!reference.count(id)) reference[id] = add(id);
        } else {
            index_.erase(id);
            reference.erase(id);
        }
        if (step % 1000 == 0) {
            for (int probe = 0; probe < 50; ++probe) {
                std::string q = "k" + std::to_string(rng() % 20'000);
                auto it = reference.find(q);
                auto found = index_.find(q);
                if (it == reference.end()) {
                    EXPECT_FALSE(found) << q;
                } else {
                    EXPECT_EQ(found, it->second) << q;
                }
            }
        }
    }
    EXPECT_EQ(index_.size(), reference.size());
    for (auto &[id, slot] : reference)
        EXPECT_EQ(index_.find(id), slot);
}

}  // namespace
}  // namespace keyturn
