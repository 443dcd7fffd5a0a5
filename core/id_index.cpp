#include "core/id_index.hpp"

#include <bit>

namespace keyturn {

std::uint32_t IdIndex::hash_of(std::string_view id) noexcept {
    // FNV-1a, then a finalizer so that ids differing in their last characters
    // ("c1", "c2") spread over the low bits used for the home position.
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : id) {
        h ^= c;
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return static_cast<std::uint32_t>(h);
}

std::size_t IdIndex::probe(std::string_view id, std::uint32_t hash) const {
    for (std::size_t i = home(hash);; i = (i + 1) & (entries_.size() - 1)) {
        const std::uint64_t e = entries_[i];
        if (e == kEmpty) return i;
        if (hash_part(e) == hash && id_of_(slot_of(e)) == id) return i;
    }
}

std::optional<IdIndex::Slot> IdIndex::find(std::string_view id) const {
    if (size_ == 0) return std::nullopt;
    const std::uint64_t e = entries_[probe(id, hash_of(id))];
    if (e == kEmpty) return std::nullopt;
    return slot_of(e);
}

void IdIndex::reserve(std::size_t count) {
    // At most half full, so probes stay short.
    std::size_t wanted = std::bit_ceil(std::max<std::size_t>(16, count * 2));
    if (wanted > entries_.size()) grow(wanted);
}

void IdIndex::grow(std::size_t capacity) {
    std::vector<std::uint64_t> old(capacity, kEmpty);
    old.swap(entries_);
    for (std::uint64_t e : old) {
        if (e == kEmpty) continue;
        std::size_t i = home(hash_part(e));
        while (entries_[i] != kEmpty)
            i = (i + 1) & (entries_.size() - 1);
        entries_[i] = e;
    }
}

std::optional<IdIndex::Slot> IdIndex::insert(std::string_view id, Slot slot) {
    if ((size_ + 1) * 2 > entries_.size()) grow(std::max<std::size_t>(16, entries_.size() * 2));
    const std::uint32_t hash = hash_of(id);
    std::uint64_t &entry = entries_[probe(id, hash)];
    if (entry != kEmpty) return slot_of(entry);
    entry = pack(hash, slot);
    ++size_;
    return std::nullopt;
}

void IdIndex::erase(std::string_view id) {
    if (size_ == 0) return;
    std::size_t hole = probe(id, hash_of(id));
    if (entries_[hole] == kEmpty) return;
    entries_[hole] = kEmpty;
    --size_;
    // Backward-shift deletion: move later entries of the same run into the hole
    // when their home position allows it, so that no tombstones are needed.
    const std::size_t mask = entries_.size() - 1;
    for (std::size_t i = (hole + 1) & mask; entries_[i] != kEmpty; i = (i + 1) & mask) {
        const std::size_t h = home(hash_part(entries_[i]));
        // The entry may move to `hole` if `hole` lies cyclically in [h, i).
        const bool movable = (i > hole) ? (h <= hole || h > i) : (h <= hole && h > i);
        if (movable) {
            entries_[hole] = entries_[i];
            entries_[i] = kEmpty;
            hole = i;
        }
    }
}

}  // namespace keyturn
