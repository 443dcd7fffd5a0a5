#include "core/hazard.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace keyturn::hazard {

// A thread's slot holds a few pointers, so that guards may nest (a reader inside a
// callback that itself reads).
constexpr int kDepth = 4;

struct Slot {
    std::atomic<const void *> pointers[kDepth] = {};
    std::atomic<bool> in_use{false};
    Slot *next = nullptr;
};

namespace {

// Slots are never freed: a thread that ends gives its slot back for reuse.
std::atomic<Slot *> g_slots{nullptr};

Slot *acquire_slot() {
    for (Slot *s = g_slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
        bool expected = false;
        if (!s->in_use.load(std::memory_order_relaxed) &&
            s->in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
            return s;
        }
    }
    Slot *s = new Slot;
    s->in_use.store(true, std::memory_order_relaxed);
    Slot *head = g_slots.load(std::memory_order_relaxed);
    do {
        s->next = head;
    } while (!g_slots.compare_exchange_weak(head, s, std::memory_order_acq_rel));
    return s;
}

}  // namespace

struct ThreadSlot {
    Slot *slot = acquire_slot();
    int depth = 0;
    ~ThreadSlot() {
        for (auto &p : slot->pointers)
            p.store(nullptr, std::memory_order_release);
        slot->in_use.store(false, std::memory_order_release);
    }
};

// The initial-exec model turns each access into one instruction instead of a call
// to __tls_get_addr; the few bytes it needs come from the static TLS surplus that
// glibc keeps for libraries loaded with dlopen (as Python's ctypes does).
static ThreadSlot &this_thread_slot() {
    __attribute__((tls_model("initial-exec"))) thread_local ThreadSlot owner;
    return owner;
}

namespace {

struct Retired {
    const void *address;
    void *owner;
    void (*destroy)(void *);
};

struct RetiredList {
    std::mutex mutex;
    std::vector<Retired> items;
};

RetiredList &retired_list() {
    // Leaked on purpose: readers on other threads may outlive static destruction.
    static auto *list = new RetiredList;
    return *list;
}

constexpr std::size_t kReclaimEvery = 256;

std::vector<Retired> take_unprotected(std::vector<Retired> &items) {
    std::vector<const void *> protected_now;
    for (Slot *s = g_slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
        for (const auto &cell : s->pointers) {
            if (const void *p = cell.load(std::memory_order_seq_cst)) protected_now.push_back(p);
        }
    }
    std::sort(protected_now.begin(), protected_now.end());

    std::vector<Retired> free_now;
    auto keep = std::partition(items.begin(), items.end(), [&](const Retired &r) {
        return std::binary_search(protected_now.begin(), protected_now.end(), r.address);
    });
    free_now.assign(keep, items.end());
    items.erase(keep, items.end());
    return free_now;
}

}  // namespace

Guard::Guard() noexcept : owner_(&this_thread_slot()) {
    ThreadSlot &t = *owner_;
    if (t.depth >= kDepth) {
        // Nesting this deep means a callback loop; it is a bug, not a load to serve.
        std::fprintf(stderr, "keyturn: hazard guards nested more than %d deep\n", kDepth);
        std::abort();
    }
    cell_ = &t.slot->pointers[t.depth++];
}

Guard::~Guard() {
    cell_->store(nullptr, std::memory_order_release);
    --owner_->depth;
}

void Guard::announce(const void *p) noexcept {
    cell_->store(p, std::memory_order_seq_cst);
}

void retire(const void *address, void *owner, void (*destroy)(void *)) {
    std::vector<Retired> free_now;
    {
        RetiredList &list = retired_list();
        std::lock_guard lock(list.mutex);
        list.items.push_back({address, owner, destroy});
        if (list.items.size() % kReclaimEvery == 0) free_now = take_unprotected(list.items);
    }
    for (const Retired &r : free_now)
        r.destroy(r.owner);
}

void reclaim() {
    std::vector<Retired> free_now;
    {
        RetiredList &list = retired_list();
        std::lock_guard lock(list.mutex);
        free_now = take_unprotected(list.items);
    }
    for (const Retired &r : free_now)
        r.destroy(r.owner);
}

}  // namespace keyturn::hazard
