#pragma once
// Lock-free reading of the current snapshot, with hazard pointers.
//
// A reader announces the pointer it is about to use in a slot of its own thread,
// checks the pointer is still current, and uses it; a writer that replaces a
// pointer retires the old object, which is deleted only once no slot announces it.
// Readers never write to memory that another reader writes, so reads on many
// threads do not slow each other down, and they never wait for a writer.

#include <atomic>
#include <memory>

namespace keyturn::hazard {

struct Slot;
struct ThreadSlot;

// Protects one pointer for the lifetime of the guard, on the calling thread.
class Guard {
  public:
    Guard() noexcept;
    ~Guard();
    Guard(const Guard &) = delete;
    Guard &operator=(const Guard &) = delete;

    // Loads `source` and keeps the loaded object alive until the guard ends.
    template <class T>
    const T *protect(const std::atomic<const T *> &source) noexcept {
        const T *p = source.load(std::memory_order_acquire);
        for (;;) {
            announce(p);
            const T *again = source.load(std::memory_order_seq_cst);
            if (again == p) return p;
            p = again;
        }
    }

  private:
    void announce(const void *p) noexcept;
    // Found once per guard: thread-local storage in a shared library costs a call.
    ThreadSlot *owner_;
    std::atomic<const void *> *cell_;
};

// Hands over `owner`, which keeps the object at `address` alive; the reclaimer
// calls `destroy(owner)` once no reader protects `address`. Safe from any thread.
void retire(const void *address, void *owner, void (*destroy)(void *));

// Retires the last reference this caller holds to a shared object: it is released
// once no reader protects it (others holding references keep it alive as usual).
template <class T>
void retire(std::shared_ptr<const T> object) {
    if (object == nullptr) return;
    const void *address = object.get();
    auto *owner = new std::shared_ptr<const T>(std::move(object));
    retire(address, owner, [](void *p) { delete static_cast<std::shared_ptr<const T> *>(p); });
}

// Deletes every retired object that no reader protects now. Called by retire()
// from time to time; tests and shutdown may call it directly.
void reclaim();

}  // namespace keyturn::hazard
