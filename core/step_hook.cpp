#include "core/step_hook.hpp"

#include "core/json_support.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

json::value version_doc(const SecretVersion *v, const json::storage_ptr &sp) {
    if (v == nullptr) return json::value(nullptr, sp);
    json::object o(sp);
    o["version"] = json::string(v->id, sp);
    put_secret(o, "value", v->value);
    return o;
}

}  // namespace

void write_step_request(ScrubbedString &out, const StepRequest &r) {
    json::storage_ptr sp = scrubbing_storage();
    json::object o(sp);
    o["secret"] = json::string(r.secret, sp);
    o["step"] = step_name(r.step);
    o["version"] = json::string(r.version, sp);
    o["attempt"] = r.attempt;
    const SecretState &s = *r.state;
    o["current"] = version_doc(s.current ? &*s.current : nullptr, sp);
    o["previous"] = version_doc(s.previous(), sp);
    o["pending"] = version_doc(s.pending ? &*s.pending : nullptr, sp);
    json::array abandoned(sp);
    for (const auto &v : s.abandoned)
        abandoned.push_back(version_doc(&v, sp));
    o["abandoned"] = std::move(abandoned);
    json::object meta(sp);
    if (r.metadata != nullptr) {
        for (const auto &[k, v] : *r.metadata)
            meta[k] = json::string(v, sp);
    }
    o["metadata"] = std::move(meta);
    serialize_into(out, o);
}

StepOutcome parse_step_result(std::string_view json_text, std::optional<RotationStep> step) {
    if (json_text.size() > kMaxSpecSize) {
        throw Error(Status::config, "step result is " + std::to_string(json_text.size()) +
                                        " bytes; at most " + std::to_string(kMaxSpecSize) +
                                        " are allowed");
    }
    json::value doc = parse_secret_json(json_text, "step result");
    JsonErrors errors;
    const JsonPath root;
    ObjectReader r(doc, root, errors);
    if (!r.valid()) throw Error(Status::config, "step result: expected a JSON object");

    if (r.has("error")) {
        r.allow_only({"error", "retry_after"});
        StepFailure failure;
        if (auto e = r.string("error")) failure.reason = *e;
        if (auto d = r.duration("retry_after", Duration::zero(), std::chrono::hours(24))) {
            failure.retry_after = *d;
        }
        if (!errors.empty()) throw Error(Status::config, "step result: " + errors.text());
        if (failure.reason.empty()) failure.reason = "the hook reported a failure";
        return failure;
    }

    StepSuccess success;
    if (step && *step != RotationStep::create) {
        // Other steps answer with an empty object; a stray value is refused so that a
        // hook confusing its steps is noticed.
        r.allow_only({});
        if (!errors.empty()) throw Error(Status::config, "step result: " + errors.text());
        return success;
    }
    r.allow_only({"value", "value_base64"});
    const json::value *plain = r.raw("value");
    const json::value *encoded = r.raw("value_base64");
    if (plain && encoded) {
        errors.add("value", "give \"value\" or \"value_base64\", not both");
    } else if (plain) {
        if (plain->is_string()) {
            success.value = SecretBytes(std::string_view(plain->get_string()));
        } else {
            errors.add("value", "expected a string");
        }
    } else if (encoded) {
        if (encoded->is_string()) success.value = base64_decode(encoded->get_string());
        if (!success.value) errors.add("value_base64", "expected a base64 string");
    } else if (step) {
        errors.add("value", "is required for step \"create\" (or \"value_base64\", or \"error\")");
    }
    if (success.value && success.value->empty()) {
        errors.add("value", "must not be empty");
    } else if (success.value && success.value->size() > kMaxValueSize) {
        errors.add("value", "is " + std::to_string(success.value->size()) + " bytes; at most " +
                                std::to_string(kMaxValueSize) + " are allowed");
    }
    if (!errors.empty()) throw Error(Status::config, "step result: " + errors.text());
    return success;
}

}  // namespace keyturn
