#include "core/rotation.hpp"

#include <ctime>

#include "core/json_support.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

const char *step_name(RotationStep step) noexcept {
    switch (step) {
        case RotationStep::create:
            return "create";
        case RotationStep::set:
            return "set";
        case RotationStep::test:
            return "test";
        case RotationStep::finish:
            return "finish";
    }
    return "create";
}

std::optional<RotationStep> step_from_name(std::string_view name) noexcept {
    for (RotationStep s :
         {RotationStep::create, RotationStep::set, RotationStep::test, RotationStep::finish}) {
        if (name == step_name(s)) return s;
    }
    return std::nullopt;
}

const char *stage_name(RotationStage stage) noexcept {
    switch (stage) {
        case RotationStage::started:
            return "started";
        case RotationStage::created:
            return "created";
        case RotationStage::set:
            return "set";
        case RotationStage::tested:
            return "tested";
    }
    return "started";
}

namespace {

std::optional<RotationStage> stage_from_name(std::string_view name) {
    for (RotationStage s : {RotationStage::started, RotationStage::created, RotationStage::set,
                            RotationStage::tested}) {
        if (name == stage_name(s)) return s;
    }
    return std::nullopt;
}

void journal(SecretState &state, TimePoint now, const std::string &version, std::string transition,
             std::string detail = {}) {
    state.journal.push_back(JournalEntry{now, version, std::move(transition), std::move(detail)});
    while (state.journal.size() > kJournalLength)
        state.journal.pop_front();
}

[[noreturn]] void out_of_order(const SecretState &state, RotationStep step) {
    std::string why = state.rotation
                          ? std::string("the rotation of version ") + state.rotation->version +
                                " is at stage \"" + stage_name(state.rotation->stage) + "\""
                          : std::string("no rotation is in flight");
    throw Error(Status::state,
                std::string("step \"") + step_name(step) + "\" is out of order: " + why);
}

}  // namespace

std::string make_version_id(TimePoint now, std::uint32_t random) {
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm utc{};
    gmtime_r(&t, &utc);
    char text[40];
    std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &utc);
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "-%06x", static_cast<unsigned>(random & 0xffffffu));
    return std::string(text) + suffix;
}

void seed(SecretState &state, std::string version, SecretBytes value, TimePoint now) {
    if (state.current) throw Error(Status::state, "the secret already has a CURRENT value");
    journal(state, now, version, "seeded");
    state.current = SecretVersion{std::move(version), std::move(value), now};
}

void begin_rotation(SecretState &state, std::string version, std::string reason, int round,
                    TimePoint now) {
    if (state.rotation) {
        throw Error(Status::state,
                    "a rotation (version " + state.rotation->version + ") is already in flight");
    }
    RotationInFlight r;
    r.version = std::move(version);
    r.reason = std::move(reason);
    r.started_at = now;
    r.round = round;
    journal(state, now, r.version, "started", r.reason);
    state.rotation = std::move(r);
}

std::optional<RotationStep> next_step(const SecretState &state) {
    if (!state.rotation) return std::nullopt;
    switch (state.rotation->stage) {
        case RotationStage::started:
            return RotationStep::create;
        case RotationStage::created:
            return RotationStep::set;
        case RotationStage::set:
            return RotationStep::test;
        case RotationStage::tested:
            return RotationStep::finish;
    }
    return std::nullopt;
}

void record_success(SecretState &state, RotationStep step, std::optional<SecretBytes> created,
                    TimePoint now, int keep_past) {
    if (next_step(state) != step) out_of_order(state, step);
    RotationInFlight &r = *state.rotation;
    switch (step) {
        case RotationStep::create:
            if (!created) {
                throw Error(Status::config, "step \"create\" succeeded without a value");
            }
            state.pending = SecretVersion{r.version, std::move(*created), now};
            r.stage = RotationStage::created;
            journal(state, now, r.version, "created");
            return;
        case RotationStep::set:
            r.stage = RotationStage::set;
            journal(state, now, r.version, "set");
            return;
        case RotationStep::test:
            r.stage = RotationStage::tested;
            journal(state, now, r.version, "tested");
            return;
        case RotationStep::finish:
            break;
    }
    // finish: PENDING becomes CURRENT, CURRENT becomes PREVIOUS.
    if (state.current) state.past.insert(state.past.begin(), std::move(*state.current));
    state.current = std::move(state.pending);
    state.pending.reset();
    const std::size_t keep = keep_past < 0 ? 0 : static_cast<std::size_t>(keep_past);
    // Erasing a version destroys its SecretBytes, which overwrites the bytes.
    if (state.past.size() > keep) state.past.resize(keep);
    state.abandoned.clear();
    journal(state, now, r.version, "finished");
    state.rotation.reset();
    state.last_rotated = now;
    ++state.rotations;
}

AfterFailure record_failure(SecretState &state, RotationStep step, const std::string &reason,
                            TimePoint now, int max_failures) {
    if (next_step(state) != step) out_of_order(state, step);
    RotationInFlight &r = *state.rotation;
    ++r.failures;
    r.last_error = reason;
    journal(state, now, r.version, "failed", std::string(step_name(step)) + ": " + reason);
    if (r.failures < max_failures) return AfterFailure::retry;

    journal(state, now, r.version, "abandoned",
            "after " + std::to_string(r.failures) + " failed attempt(s)");
    if (state.pending) {
        state.abandoned.insert(state.abandoned.begin(), std::move(*state.pending));
        state.pending.reset();
        if (state.abandoned.size() > kMaxAbandoned) state.abandoned.resize(kMaxAbandoned);
    }
    state.rotation.reset();
    return AfterFailure::abandoned;
}

const SecretVersion *find_version(const SecretState &state, std::string_view id) {
    if (state.current && state.current->id == id) return &*state.current;
    if (state.pending && state.pending->id == id) return &*state.pending;
    for (const auto &v : state.past)
        if (v.id == id) return &v;
    for (const auto &v : state.abandoned)
        if (v.id == id) return &v;
    return nullptr;
}

// ---------------------------------------------------------------------------------
// Store format

namespace {

constexpr std::string_view kFormat = "keyturn-secret-1";

json::object encode_version(const SecretVersion &v, json::storage_ptr sp) {
    json::object o(sp);
    o["id"] = json::string(v.id, sp);
    put_secret(o, "value", v.value);
    o["created_at"] = to_unix_seconds(v.created_at);
    return o;
}

class Decoder {
  public:
    explicit Decoder(std::string_view where) : where_(where) {}

    [[noreturn]] void bad(const std::string &path, const std::string &why) const {
        throw Error(Status::store, std::string(where_) + ": " + path + ": " + why);
    }

    const json::object &object(const json::value &v, const std::string &path) const {
        if (!v.is_object()) bad(path, "expected an object");
        return v.get_object();
    }

    std::string string(const json::object &o, std::string_view key, const std::string &path) const {
        const json::value *v = o.if_contains(key);
        if (v == nullptr || !v->is_string())
            bad(path + "." + std::string(key), "expected a string");
        return std::string(v->get_string());
    }

    double number(const json::object &o, std::string_view key, const std::string &path) const {
        const json::value *v = o.if_contains(key);
        if (v == nullptr || !v->is_number())
            bad(path + "." + std::string(key), "expected a number");
        return v->to_number<double>();
    }

    SecretVersion version(const json::value &v, const std::string &path) const {
        const json::object &o = object(v, path);
        SecretVersion out;
        out.id = string(o, "id", path);
        auto value = get_secret(o, "value", std::string(where_) + ": " + path);
        if (!value) bad(path + ".value", "missing");
        out.value = std::move(*value);
        out.created_at = from_unix_seconds(number(o, "created_at", path));
        return out;
    }

    std::vector<SecretVersion> versions(const json::object &o, std::string_view key) const {
        std::vector<SecretVersion> out;
        const json::value *v = o.if_contains(key);
        if (v == nullptr) return out;
        if (!v->is_array()) bad(std::string(key), "expected an array");
        std::size_t i = 0;
        for (const auto &item : v->get_array())
            out.push_back(version(item, std::string(key) + "[" + std::to_string(i++) + "]"));
        return out;
    }

  private:
    std::string_view where_;
};

}  // namespace

void encode_secret_state(ScrubbedString &out, const SecretState &state) {
    json::storage_ptr sp = scrubbing_storage();
    json::object o(sp);
    o["format"] = kFormat;
    if (state.current) o["current"] = encode_version(*state.current, sp);
    if (state.pending) o["pending"] = encode_version(*state.pending, sp);
    json::array past(sp);
    for (const auto &v : state.past)
        past.push_back(encode_version(v, sp));
    o["past"] = std::move(past);
    json::array abandoned(sp);
    for (const auto &v : state.abandoned)
        abandoned.push_back(encode_version(v, sp));
    o["abandoned"] = std::move(abandoned);
    if (state.rotation) {
        const RotationInFlight &r = *state.rotation;
        json::object ro(sp);
        ro["version"] = r.version;
        ro["stage"] = stage_name(r.stage);
        ro["reason"] = r.reason;
        ro["started_at"] = to_unix_seconds(r.started_at);
        ro["failures"] = r.failures;
        ro["round"] = r.round;
        ro["last_error"] = r.last_error;
        o["rotation"] = std::move(ro);
    }
    if (state.last_rotated) o["last_rotated"] = to_unix_seconds(*state.last_rotated);
    o["rotations"] = state.rotations;
    json::array entries(sp);
    for (const auto &e : state.journal) {
        json::object jo(sp);
        jo["time"] = to_unix_seconds(e.time);
        jo["version"] = e.version;
        jo["transition"] = e.transition;
        if (!e.detail.empty()) jo["detail"] = e.detail;
        entries.push_back(std::move(jo));
    }
    o["journal"] = std::move(entries);
    serialize_into(out, o);
}

SecretState decode_secret_state(std::string_view text, std::string_view where) {
    json::value doc;
    try {
        doc = parse_secret_json(text, where);
    } catch (const Error &e) {
        throw Error(Status::store, e.what());
    }
    Decoder d(where);
    const json::object &o = d.object(doc, "(document)");
    if (const json::value *f = o.if_contains("format");
        f == nullptr || !f->is_string() || f->get_string() != kFormat) {
        d.bad("format", "expected \"" + std::string(kFormat) + "\"");
    }
    SecretState s;
    if (const json::value *v = o.if_contains("current")) s.current = d.version(*v, "current");
    if (const json::value *v = o.if_contains("pending")) s.pending = d.version(*v, "pending");
    s.past = d.versions(o, "past");
    s.abandoned = d.versions(o, "abandoned");
    if (const json::value *v = o.if_contains("rotation")) {
        const json::object &ro = d.object(*v, "rotation");
        RotationInFlight r;
        r.version = d.string(ro, "version", "rotation");
        auto stage = stage_from_name(d.string(ro, "stage", "rotation"));
        if (!stage) d.bad("rotation.stage", "not a known stage");
        r.stage = *stage;
        r.reason = d.string(ro, "reason", "rotation");
        r.started_at = from_unix_seconds(d.number(ro, "started_at", "rotation"));
        r.failures = static_cast<int>(d.number(ro, "failures", "rotation"));
        r.round = static_cast<int>(d.number(ro, "round", "rotation"));
        if (const json::value *e = ro.if_contains("last_error"); e && e->is_string()) {
            r.last_error = std::string(e->get_string());
        }
        // A stage past "started" needs the PENDING value it created.
        if (r.stage != RotationStage::started && (!s.pending || s.pending->id != r.version)) {
            d.bad("rotation", "stage \"" + std::string(stage_name(r.stage)) +
                                  "\" without a PENDING value for version " + r.version);
        }
        s.rotation = std::move(r);
    } else if (s.pending) {
        d.bad("pending", "a PENDING value without a rotation in flight");
    }
    if (o.contains("last_rotated"))
        s.last_rotated = from_unix_seconds(d.number(o, "last_rotated", "(document)"));
    if (o.contains("rotations")) {
        s.rotations = static_cast<std::uint64_t>(d.number(o, "rotations", "(document)"));
    }
    if (const json::value *v = o.if_contains("journal"); v && v->is_array()) {
        std::size_t i = 0;
        for (const auto &item : v->get_array()) {
            const std::string path = "journal[" + std::to_string(i++) + "]";
            const json::object &jo = d.object(item, path);
            JournalEntry e;
            e.time = from_unix_seconds(d.number(jo, "time", path));
            e.version = d.string(jo, "version", path);
            e.transition = d.string(jo, "transition", path);
            if (jo.contains("detail")) e.detail = d.string(jo, "detail", path);
            s.journal.push_back(std::move(e));
        }
    }
    return s;
}

}  // namespace keyturn
