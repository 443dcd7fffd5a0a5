#pragma once
// Stores in Vault's KV secrets engine, version 2: a credential's snapshot, or a rotating
// secret's versions and journal, kept as the fields of one KV secret and written with
// check-and-set, so that two writers never overwrite each other unseen.
//
// How it behaves:
// - load reads `<mount>/data/<path>`. Nothing there (404) is "nothing stored". The
//   version read is remembered; a soft-deleted latest version counts, as it does for
//   Vault's check-and-set.
// - persist writes `{"options": {"cas": <remembered version, 0 if none>}, "data": {...}}`
//   and remembers the version Vault answers. If another writer got there first, Vault
//   refuses the write; the refusal is an Error(store) naming the store, and the secret
//   is left as that writer made it. The store does not retry and does not read the
//   newer version: every later persist is refused the same way until the credential or
//   secret is added again, which loads what the other writer stored.
// - Each call is synchronous and durable on return, bounded by the request timeout. It
//   runs its own HTTP client on its own io_context, driven inside the call, so it may be
//   called from an engine thread without waiting on the engine's io_context. Calls on one
//   store go one at a time.
// - The token is read from `token_file` (mode 0600) at every call, so a token renewed
//   into that file by another program is picked up. It travels in X-Vault-Token only and
//   appears in no message; neither does any stored value. Vault's `errors` text does.
//
// Limitation: a write whose answer is lost (connection cut after the request went out)
// may have been applied; the store cannot tell, keeps the version it knew, and so
// refuses its next persist as a conflict. Adding the credential again resolves it.
// Limitation: every store holds its own io_context and kept-alive connection: a few file
// descriptors per credential or secret stored in Vault.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/events.hpp"
#include "core/http_client.hpp"
#include "core/store.hpp"

namespace keyturn {

class ObjectReader;
class JsonErrors;

struct VaultKvStoreSpec {
    // scheme://host[:port][/prefix], without a trailing slash.
    std::string address;
    // The KV v2 mount and the secret's path under it, without leading or trailing
    // slashes: "secret" and "app/db".
    std::string mount = "secret";
    std::string path;
    // A file (mode 0600) holding the Vault token.
    std::string token_file;
    // Sent as X-Vault-Namespace when not empty.
    std::string vault_namespace;
    HttpTlsOptions tls;
    HttpRequestOptions options = default_options();

    static HttpRequestOptions default_options() {
        HttpRequestOptions o;
        o.request_timeout = std::chrono::seconds(10);
        return o;
    }
};

// Reads the keys of {"type": "vault_kv", ...} from `store`, whose type has been read
// already; every mistake goes to `errors` at its JSON path. Returns nothing on a mistake.
std::shared_ptr<const VaultKvStoreSpec> read_vault_kv_store_spec(ObjectReader &store,
                                                                 JsonErrors &errors);

// --- the pure half: requests built and answers read, on byte strings -------------------

// "vault kv <address>/<mount>/<path>": for messages; it holds no secret.
std::string describe_vault_kv(const VaultKvStoreSpec &spec);

// <address>/v1/<mount>/data/<path>, each path segment percent-encoded.
std::string vault_kv_data_url(const VaultKvStoreSpec &spec);

// X-Vault-Token, X-Vault-Namespace (when the spec names one), X-Vault-Request: true,
// Accept and Content-Type.
HttpHeaders vault_kv_headers(const VaultKvStoreSpec &spec, const SecretBytes &token);

// The body of a write: {"options": {"cas": cas}, "data": document}. `document` is the
// text of a JSON object; it is copied as it is.
void build_vault_kv_write(ScrubbedString &out, std::string_view document, std::uint64_t cas);

// What a read found.
struct VaultKvRead {
    // The secret's data object as JSON text; nothing when no live version exists.
    std::optional<ScrubbedString> document;
    // The current version: of the document read, or of a deleted one; 0 for none.
    std::uint64_t version = 0;
};

// The meaning of the answer to a read. Throws Error(store) starting with `where` for a
// failure (transport, a status other than 200 and a plain 404, a malformed answer).
VaultKvRead read_vault_kv_answer(const HttpResult &result, std::string_view where);

// The meaning of the answer to a write made with check-and-set `cas`: the version now
// current. Throws Error(store) starting with `where`; a lost check-and-set says that
// another writer changed the secret and that it was not overwritten.
std::uint64_t read_vault_kv_write_answer(const HttpResult &result, std::uint64_t cas,
                                         std::string_view where);

using StoreLog = std::function<void(LogLevel level, std::string line)>;

// Reads the secret at <mount>/data/<path> once, synchronously: its data object as JSON
// text, or nothing when no live version exists. Throws Error(store) naming the secret.
// For seeds: a first value that another program or an operator put there.
std::optional<ScrubbedString> read_vault_kv_secret(std::shared_ptr<const VaultKvStoreSpec> spec,
                                                   StoreLog log = {});

// --- the stores ---------------------------------------------------------------------------

// One KV v2 secret read and written as one JSON document; shared by both stores.
class VaultKvDocument;

class VaultKvStore final : public Store {
  public:
    // `log` receives the HTTP client's operator messages (insecure TLS); it may be empty.
    explicit VaultKvStore(std::shared_ptr<const VaultKvStoreSpec> spec, StoreLog log = {});
    ~VaultKvStore() override;
    std::optional<Snapshot> load() override;
    void persist(const Snapshot &snapshot) override;
    std::string describe() const override;

  private:
    std::unique_ptr<VaultKvDocument> kv_;
};

class VaultKvSecretStore final : public SecretStore {
  public:
    explicit VaultKvSecretStore(std::shared_ptr<const VaultKvStoreSpec> spec, StoreLog log = {});
    ~VaultKvSecretStore() override;
    std::optional<SecretState> load() override;
    void persist(const SecretState &state) override;
    std::string describe() const override;

  private:
    std::unique_ptr<VaultKvDocument> kv_;
};

}  // namespace keyturn
