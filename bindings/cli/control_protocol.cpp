#include "bindings/cli/control_protocol.hpp"

#include <chrono>

#include <boost/json.hpp>

#include "core/engine.hpp"
#include "core/status.hpp"

namespace keyturn::agent {

namespace json = boost::json;

namespace {

const char *code_of(Status status) {
    switch (status) {
        case Status::not_found:
            return "not_found";
        case Status::state:
        case Status::not_ready:
            return "state";
        case Status::invalid_argument:
            return "bad_request";
        default:
            return "failed";
    }
}

double unix_now() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string status_answer(Engine &engine) {
    json::object out;
    out["ok"] = true;
    out["time"] = unix_now();
    out["credentials"] = json::parse(engine.status_json());
    out["secrets"] = json::parse(engine.secret_status_json());
    return json::serialize(out);
}

std::string required_id(const json::object &request) {
    const json::value *id = request.if_contains("id");
    if (id == nullptr || !id->is_string() || id->get_string().empty()) {
        throw Error(Status::invalid_argument, "\"id\" is required: a credential's or secret's id");
    }
    return std::string(id->get_string());
}

}  // namespace

std::string failure_answer(std::string_view code, std::string_view error) {
    json::object out;
    out["ok"] = false;
    out["error"] = error;
    out["code"] = code;
    return json::serialize(out);
}

std::string answer_request(Engine &engine, std::string_view line) {
    boost::system::error_code ec;
    json::value request = json::parse(line, ec);
    if (ec)
        return failure_answer("bad_request",
                              "the request is not valid JSON (" + ec.message() + ")");
    const json::object *o = request.if_object();
    const json::value *op = o != nullptr ? o->if_contains("op") : nullptr;
    if (op == nullptr || !op->is_string()) {
        return failure_answer("bad_request", "expected an object with \"op\"");
    }

    try {
        if (op->get_string() == "status") return status_answer(engine);
        if (op->get_string() == "refresh") {
            const std::string id = required_id(*o);
            engine.refresh_now(id);
            json::object out{{"ok", true},
                             {"message", "credential \"" + id + "\": refresh requested"}};
            return json::serialize(out);
        }
        if (op->get_string() == "rotate") {
            const std::string id = required_id(*o);
            const std::string version = engine.rotate_now(id);
            json::object out{{"ok", true}, {"version", version}};
            return json::serialize(out);
        }
    } catch (const Error &e) {
        return failure_answer(code_of(e.status()), e.what());
    } catch (const std::exception &e) {
        return failure_answer("failed", e.what());
    }
    return failure_answer("bad_request",
                          "unknown op: expected \"status\", \"refresh\" or \"rotate\"");
}

}  // namespace keyturn::agent
