#pragma once
// Maps credential ids to slot numbers: an open-addressing hash table of 8-byte
// entries (a 32-bit hash and the slot), so that a million ids cost a few megabytes
// rather than a heap node each. The ids themselves stay with their credentials;
// the table asks for them through `id_of` when hashes collide.

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

namespace keyturn {

class IdIndex {
  public:
    using Slot = std::uint32_t;
    using IdOf = std::function<std::string_view(Slot)>;

    explicit IdIndex(IdOf id_of) : id_of_(std::move(id_of)) {}

    std::optional<Slot> find(std::string_view id) const;
    // Adds `id` → `slot` unless `id` is present; returns the slot already there.
    std::optional<Slot> insert(std::string_view id, Slot slot);
    // Removes `id`; does nothing if it is absent.
    void erase(std::string_view id);

    std::size_t size() const noexcept { return size_; }
    void reserve(std::size_t count);

  private:
    static constexpr std::uint64_t kEmpty = 0;

    static std::uint32_t hash_of(std::string_view id) noexcept;
    static std::uint64_t pack(std::uint32_t hash, Slot slot) noexcept {
        return (std::uint64_t{hash} << 32) | (std::uint64_t{slot} + 1);
    }
    static Slot slot_of(std::uint64_t entry) noexcept {
        return static_cast<Slot>((entry & 0xffffffffu) - 1);
    }
    static std::uint32_t hash_part(std::uint64_t entry) noexcept {
        return static_cast<std::uint32_t>(entry >> 32);
    }
    std::size_t home(std::uint32_t hash) const noexcept { return hash & (entries_.size() - 1); }
    // Index of the entry for `id`, or of the empty entry where it would go.
    std::size_t probe(std::string_view id, std::uint32_t hash) const;
    void grow(std::size_t capacity);

    IdOf id_of_;
    std::vector<std::uint64_t> entries_;
    std::size_t size_ = 0;
};

}  // namespace keyturn
