#include <mutex>
#include <optional>
#include <unordered_map>

#include "core/provider.hpp"

namespace keyturn {

const char *failure_action_name(FailureAction action) noexcept {
    switch (action) {
        case FailureAction::retry:
            return "retry";
        case FailureAction::login:
            return "login";
        case FailureAction::give_up:
            return "give_up";
    }
    return "retry";
}

Status Completion::complete(RefreshOutcome &&outcome) const {
    return completions::complete(token_, std::move(outcome));
}

namespace completions {

namespace {

struct Pending {
    std::weak_ptr<CompletionTarget> target;
    std::uint32_t slot;
    CompletionKind kind;
};

struct Table {
    std::mutex mutex;
    std::unordered_map<std::uint64_t, Pending> pending;
    std::uint64_t next_token = 1;
};

Table &table() {
    // Leaked on purpose: a hook thread may complete during static destruction.
    static auto *t = new Table;
    return *t;
}

}  // namespace

std::uint64_t open(std::weak_ptr<CompletionTarget> target, std::uint32_t slot,
                   CompletionKind kind) {
    Table &t = table();
    std::lock_guard lock(t.mutex);
    std::uint64_t token = t.next_token++;
    t.pending.emplace(token, Pending{std::move(target), slot, kind});
    return token;
}

std::optional<CompletionKind> kind_of(std::uint64_t token) {
    Table &t = table();
    std::lock_guard lock(t.mutex);
    auto it = t.pending.find(token);
    if (it == t.pending.end()) return std::nullopt;
    return it->second.kind;
}

bool withdraw(std::uint64_t token) {
    Table &t = table();
    std::lock_guard lock(t.mutex);
    return t.pending.erase(token) == 1;
}

namespace {

// Claims an outstanding token of `kind`; nothing when it is not outstanding or of
// the other kind (then *wrong_kind is set and the token stays outstanding).
std::optional<Pending> claim(std::uint64_t token, CompletionKind kind, bool *wrong_kind) {
    Table &t = table();
    std::lock_guard lock(t.mutex);
    auto it = t.pending.find(token);
    if (it == t.pending.end()) return std::nullopt;
    if (it->second.kind != kind) {
        *wrong_kind = true;
        return std::nullopt;
    }
    Pending claimed = std::move(it->second);
    t.pending.erase(it);
    return claimed;
}

}  // namespace

Status complete(std::uint64_t token, RefreshOutcome &&outcome) {
    bool wrong_kind = false;
    std::optional<Pending> claimed = claim(token, CompletionKind::refresh, &wrong_kind);
    if (wrong_kind) return Status::invalid_argument;
    if (!claimed) return Status::stale_completion;
    std::shared_ptr<CompletionTarget> target = claimed->target.lock();
    if (target == nullptr) return Status::stale_completion;
    return target->on_outcome(claimed->slot, token, std::move(outcome));
}

Status complete(std::uint64_t token, StepOutcome &&outcome) {
    bool wrong_kind = false;
    std::optional<Pending> claimed = claim(token, CompletionKind::step, &wrong_kind);
    if (wrong_kind) return Status::invalid_argument;
    if (!claimed) return Status::stale_completion;
    std::shared_ptr<CompletionTarget> target = claimed->target.lock();
    if (target == nullptr) return Status::stale_completion;
    return target->on_step_outcome(claimed->slot, token, std::move(outcome));
}

}  // namespace completions

}  // namespace keyturn
