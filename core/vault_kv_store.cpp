#include "core/vault_kv_store.hpp"

#include <boost/asio/io_context.hpp>

#include <mutex>

#include "core/http_options_reader.hpp"
#include "core/http_providers.hpp"
#include "core/json_support.hpp"
#include "core/rotation.hpp"
#include "core/status.hpp"
#include "core/vault.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

std::string_view trim_slashes(std::string_view s) {
    while (!s.empty() && s.front() == '/')
        s.remove_prefix(1);
    while (!s.empty() && s.back() == '/')
        s.remove_suffix(1);
    return s;
}

// Why `p` (slashes at either end already trimmed) is not a usable Vault path.
std::optional<std::string> check_vault_path(std::string_view p) {
    if (p.empty()) return "is empty";
    for (char c : p) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "holds a control character";
    }
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = p.find('/', start);
        const std::string_view segment = p.substr(start, end - start);
        if (segment.empty()) return "holds an empty segment (\"//\")";
        if (segment == "." || segment == "..") return "holds a \".\" or \"..\" segment";
        if (end == std::string_view::npos) return std::nullopt;
        start = end + 1;
    }
}

// Percent-encodes everything but unreserved characters (RFC 3986) and the slashes that
// separate segments.
void append_path_encoded(std::string &out, std::string_view p) {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (char c : p) {
        const auto u = static_cast<unsigned char>(c);
        if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
            out += c;
        } else {
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 15];
        }
    }
}

// Plain HTTP carries the token in the clear: it is accepted only to this machine.
bool loopback_host(const std::string &host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::optional<std::uint64_t> version_number(const json::value *v) {
    if (v == nullptr || !v->is_number()) return std::nullopt;
    boost::system::error_code ec;
    const auto n = v->to_number<std::uint64_t>(ec);
    if (ec) return std::nullopt;
    return n;
}

const json::object *object_at(const json::object &o, std::string_view key) {
    const json::value *v = o.if_contains(key);
    return v != nullptr ? v->if_object() : nullptr;
}

// "<where>: <what>: <METHOD endpoint: cause>[: <Vault's errors>]".
Error failure(std::string_view where, std::string_view what, const HttpResult &r) {
    std::string message = std::string(where) + ": " + std::string(what) + ": " + r.error;
    if (r.kind == HttpErrorKind::http_status) {
        const std::string errors = vault_errors_text(r.body.str());
        if (!errors.empty()) message += ": " + errors;
    }
    return Error(Status::store, message);
}

const char *const kNotKv2 = " (is the mount a KV version 2 secrets engine?)";

}  // namespace

std::shared_ptr<const VaultKvStoreSpec> read_vault_kv_store_spec(ObjectReader &r,
                                                                 JsonErrors &errors) {
    const JsonPath &path = r.path();
    const std::size_t mistakes = errors.lines().size();
    r.allow_only(
        {"type", "address", "mount", "path", "token_file", "namespace", "tls", "timeouts"});
    auto spec = std::make_shared<VaultKvStoreSpec>();

    if (auto a = r.string("address", true)) {
        std::string address = *a;
        while (!address.empty() && address.back() == '/')
            address.pop_back();
        std::string why;
        auto url = parse_http_url(address, &why);
        const JsonPath at(path, "address");
        if (!url) {
            errors.add(at, "not a usable URL: " + why);
        } else if (address.find_first_of("?#") != std::string::npos) {
            errors.add(at, "expected the address of a Vault server, without a query or fragment");
        } else if (!url->tls && !loopback_host(url->host)) {
            errors.add(at, "must be https:// (plain http is accepted only to a loopback address)");
        }
        spec->address = std::move(address);
    }
    auto vault_path = [&](const char *key, bool required, std::string &out) {
        auto text = r.string(key, required);
        if (!text) return;
        const std::string_view trimmed = trim_slashes(*text);
        if (auto why = check_vault_path(trimmed)) {
            errors.add(JsonPath(path, key),
                       "expected a Vault path such as \"app/db\"; this one " + *why);
        }
        out = trimmed;
    };
    vault_path("mount", false, spec->mount);
    vault_path("path", true, spec->path);
    if (auto f = r.string("token_file", true)) {
        if (f->empty() || f->find('\0') != std::string::npos || f->back() == '/') {
            errors.add(JsonPath(path, "token_file"), "expected the path of a file");
        }
        spec->token_file = *f;
    }
    if (auto n = r.string("namespace")) {
        const std::string_view trimmed = trim_slashes(*n);
        if (trimmed.empty() || check_vault_path(trimmed)) {
            errors.add(JsonPath(path, "namespace"),
                       "expected a Vault namespace such as \"team-a\" or \"org/team-a\"");
        }
        spec->vault_namespace = trimmed;
    }
    read_http_options(r, path, errors, spec->tls, spec->options, false);
    if (errors.lines().size() != mistakes) return nullptr;
    return spec;
}

std::string describe_vault_kv(const VaultKvStoreSpec &spec) {
    return "vault kv " + spec.address + "/" + spec.mount + "/" + spec.path;
}

std::string vault_kv_data_url(const VaultKvStoreSpec &spec) {
    std::string url = spec.address + "/v1/";
    append_path_encoded(url, spec.mount);
    url += "/data/";
    append_path_encoded(url, spec.path);
    return url;
}

HttpHeaders vault_kv_headers(const VaultKvStoreSpec &spec, const SecretBytes &token) {
    HttpHeaders headers;
    headers.emplace_back("X-Vault-Token", std::string(token.reveal()));
    if (!spec.vault_namespace.empty()) {
        headers.emplace_back("X-Vault-Namespace", spec.vault_namespace);
    }
    headers.emplace_back("X-Vault-Request", "true");
    headers.emplace_back("Accept", "application/json");
    headers.emplace_back("Content-Type", "application/json");
    return headers;
}

void build_vault_kv_write(ScrubbedString &out, std::string_view document, std::uint64_t cas) {
    std::string &s = out.str();
    s.clear();
    s.reserve(document.size() + 48);
    s += R"({"options":{"cas":)";
    s += std::to_string(cas);
    s += R"(},"data":)";
    s += document;
    s += '}';
}

VaultKvRead read_vault_kv_answer(const HttpResult &r, std::string_view where) {
    const std::string w(where);
    VaultKvRead out;
    if (r.kind == HttpErrorKind::http_status && r.status == 404) {
        // Nothing at the path answers {"errors": []}; a deleted latest version answers
        // its metadata as well. An error text means something else: a mount or route
        // that does not exist.
        if (const std::string errors = vault_errors_text(r.body.str()); !errors.empty()) {
            throw Error(Status::store, w + ": cannot read: " + r.error + ": " + errors);
        }
        HttpJsonBody body = parse_json_object_body(r.body.str());
        if (body.object) {
            if (const json::object *data = object_at(*body.object, "data")) {
                if (const json::object *meta = object_at(*data, "metadata")) {
                    out.version = version_number(meta->if_contains("version")).value_or(0);
                }
            }
        }
        return out;
    }
    if (!r.ok()) throw failure(where, "cannot read", r);

    HttpJsonBody body = parse_json_object_body(r.body.str());
    if (!body.object) throw Error(Status::store, w + ": cannot read: " + body.error);
    const json::object *data = object_at(*body.object, "data");
    const json::object *meta = data != nullptr ? object_at(*data, "metadata") : nullptr;
    const auto version =
        meta != nullptr ? version_number(meta->if_contains("version")) : std::nullopt;
    if (!version) {
        throw Error(Status::store,
                    w + ": cannot read: the answer has no data.metadata.version" + kNotKv2);
    }
    out.version = *version;
    const json::value *document = data->if_contains("data");
    if (document == nullptr || document->is_null()) return out;
    if (!document->is_object()) {
        throw Error(Status::store, w + ": cannot read: the answer's data.data is not an object");
    }
    out.document.emplace();
    serialize_into(*out.document, *document);
    return out;
}

std::uint64_t read_vault_kv_write_answer(const HttpResult &r, std::uint64_t cas,
                                         std::string_view where) {
    const std::string w(where);
    if (r.ok()) {
        HttpJsonBody body = parse_json_object_body(r.body.str());
        const json::object *data = body.object ? object_at(*body.object, "data") : nullptr;
        const auto version =
            data != nullptr ? version_number(data->if_contains("version")) : std::nullopt;
        if (!version) {
            throw Error(Status::store, w + ": written, but the answer (HTTP " +
                                           std::to_string(r.status) + ") names no version" +
                                           kNotKv2);
        }
        return *version;
    }
    if (r.kind == HttpErrorKind::http_status && r.status == 400) {
        const std::string errors = vault_errors_text(r.body.str());
        if (errors.find("check-and-set parameter did not match") != std::string::npos) {
            const std::string since =
                cas == 0 ? "created the secret since this store found none"
                         : "changed the secret after version " + std::to_string(cas);
            throw Error(Status::store, w + ": not written: another writer " + since +
                                           " (check-and-set refused: " + errors +
                                           "); it is left as that writer made it");
        }
    }
    throw failure(where, "not written", r);
}

// --- the stores ---------------------------------------------------------------------------

class VaultKvDocument {
  public:
    VaultKvDocument(std::shared_ptr<const VaultKvStoreSpec> spec, StoreLog log)
        : spec_(std::move(spec)),
          where_(describe_vault_kv(*spec_)),
          url_(vault_kv_data_url(*spec_)),
          log_(std::move(log)) {
        client_ = make_client();
    }

    ~VaultKvDocument() {
        client_->shutdown();
        client_.reset();
        // Lets the connection close cleanly; whatever is left is destroyed with io_.
        io_.restart();
        io_.poll();
    }

    const std::string &where() const { return where_; }

    std::optional<ScrubbedString> read() {
        std::lock_guard lock(mutex_);
        VaultKvRead read = read_vault_kv_answer(exchange("GET", ScrubbedString()), where_);
        version_ = read.version;
        if (log_) {
            log_(LogLevel::debug, where_ + ": read version " + std::to_string(version_) +
                                      (read.document ? "" : " (no data)"));
        }
        return std::move(read.document);
    }

    void write(std::string_view document) {
        std::lock_guard lock(mutex_);
        ScrubbedString body;
        build_vault_kv_write(body, document, version_);
        version_ = read_vault_kv_write_answer(exchange("POST", std::move(body)), version_, where_);
        if (log_) log_(LogLevel::debug, where_ + ": wrote version " + std::to_string(version_));
    }

  private:
    std::unique_ptr<HttpClient> make_client() {
        HttpClientOptions options;
        options.max_idle_per_origin = 1;
        options.log = log_;
        return std::make_unique<HttpClient>(io_, std::move(options));
    }

    // One request, driven on io_ by this thread until its result arrives. The client's
    // timeouts end it; the deadline here is a second bound, should they not.
    HttpResult exchange(const char *method, ScrubbedString body) {
        SecretBytes token;
        try {
            token = read_secret_file(spec_->token_file, "the Vault token file");
        } catch (const Error &e) {
            throw Error(Status::store, where_ + ": " + e.what());
        }
        HttpRequest request;
        request.method = method;
        request.url = url_;
        request.headers = vault_kv_headers(*spec_, token);
        request.body = std::move(body);
        request.tls = spec_->tls;
        request.options = spec_->options;

        // Shared with the completion: it may run after this call only if the exchange
        // outlives it, which the loop below does not allow; the pointer makes sure.
        auto result = std::make_shared<std::optional<HttpResult>>();
        client_->send(std::move(request), [result](HttpResult r) { *result = std::move(r); });

        const auto &o = spec_->options;
        const auto deadline = std::chrono::steady_clock::now() + o.connect_timeout +
                              o.handshake_timeout + o.request_timeout + std::chrono::seconds(1);
        bool shut_down = false;
        if (io_.stopped()) io_.restart();
        while (!*result) {
            if (!shut_down && std::chrono::steady_clock::now() >= deadline) {
                client_->shutdown();  // ends the exchange with a failure, delivered on io_
                shut_down = true;
            }
            const std::size_t ran = shut_down ? io_.run_one() : io_.run_one_until(deadline);
            if (ran == 0 && io_.stopped() && !*result) {
                // Out of work with the result still owed: the client broke its promise.
                client_ = make_client();
                throw Error(Status::store, where_ + ": the request ended without a result");
            }
        }
        if (shut_down) client_ = make_client();
        return std::move(**result);
    }

    const std::shared_ptr<const VaultKvStoreSpec> spec_;
    const std::string where_;
    const std::string url_;
    const StoreLog log_;
    std::mutex mutex_;
    std::uint64_t version_ = 0;  // the version this store last read or wrote
    boost::asio::io_context io_;
    std::unique_ptr<HttpClient> client_;  // after io_: destroyed first
};

std::optional<ScrubbedString> read_vault_kv_secret(std::shared_ptr<const VaultKvStoreSpec> spec,
                                                   StoreLog log) {
    VaultKvDocument kv(std::move(spec), std::move(log));
    return kv.read();
}

VaultKvStore::VaultKvStore(std::shared_ptr<const VaultKvStoreSpec> spec, StoreLog log)
    : kv_(std::make_unique<VaultKvDocument>(std::move(spec), std::move(log))) {}

VaultKvStore::~VaultKvStore() = default;

std::optional<Snapshot> VaultKvStore::load() {
    std::optional<ScrubbedString> document = kv_->read();
    if (!document) return std::nullopt;
    return decode_snapshot(document->str(), kv_->where());
}

void VaultKvStore::persist(const Snapshot &snapshot) {
    ScrubbedString document;
    encode_snapshot(document, snapshot);
    kv_->write(document.str());
}

std::string VaultKvStore::describe() const {
    return kv_->where();
}

VaultKvSecretStore::VaultKvSecretStore(std::shared_ptr<const VaultKvStoreSpec> spec, StoreLog log)
    : kv_(std::make_unique<VaultKvDocument>(std::move(spec), std::move(log))) {}

VaultKvSecretStore::~VaultKvSecretStore() = default;

std::optional<SecretState> VaultKvSecretStore::load() {
    std::optional<ScrubbedString> document = kv_->read();
    if (!document) return std::nullopt;
    return decode_secret_state(document->str(), kv_->where());
}

void VaultKvSecretStore::persist(const SecretState &state) {
    ScrubbedString document;
    encode_secret_state(document, state);
    kv_->write(document.str());
}

std::string VaultKvSecretStore::describe() const {
    return kv_->where();
}

}  // namespace keyturn
