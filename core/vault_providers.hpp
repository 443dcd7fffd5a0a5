#pragma once
// Providers that keep Vault credentials alive: a Vault token (renewed, and replaced by
// an AppRole login when renewal can go no further) and a leased secret (renewed, and
// read anew when the lease can go no further). What Vault's answers mean is decided by
// the pure functions of vault.hpp; these classes chain the requests.
//
// vault_token: the published value is the token.
// - With no value yet: the token in `token_file` is looked up (auth/token/lookup-self)
//   to learn its TTL and whether it is renewable; without a token file, or when Vault
//   refuses that token, an AppRole login gives the first one.
// - Each refresh renews the token (auth/token/renew-self) by `increment` (default: the
//   TTL it was made with). A renewal that gives less than asked has met the max TTL:
//   that token is published with its last expiry and marked not renewable, and the next
//   refresh, still before expiry, logs in with AppRole. A refused renewal (400, 403 or
//   "past the max TTL") logs in at once. The role id and secret id are read from their
//   files at every login.
// - Without AppRole, a token that cannot be renewed any further is final (give_up).
// - A token that never expires (a TTL of 0) is looked up again every hour.
//
// vault_lease: the published value is the JSON text of the secret's `data` object
// (for database/creds/<role>, {"username": "...", "password": "..."}); the lease id is
// kept as the credential's refresh material, so it is persisted before the value is
// published.
// - Each refresh renews the lease (sys/leases/renew) by `increment` (default: the
//   lease's first duration). A lease renewed for less than asked is published
//   as not renewable and read anew at the next refresh; a lease that is not renewable is
//   read anew; a refused renewal (the lease expired or was revoked) is read anew at
//   once. A secret without a lease is read again every hour.
// - The token for every request is read from `token_file` each time, so that another
//   process may keep it fresh.
//
// Revocation, when asked for: `revoke_on_remove` revokes the token
// (auth/token/revoke-self) or the lease (sys/leases/revoke) when the credential is
// removed or the engine stops; `revoke_superseded_after` revokes a lease (or token)
// that a new read (or login) replaced, once that grace period has passed, so that
// readers still holding the old value can finish. Pending revocations are carried out
// at once when the credential is removed or the engine stops.
//
// Limitation: a refresh in flight when the credential is removed may still obtain a
// lease or token after the revocation ran; it is then left to expire on its own.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/events.hpp"
#include "core/http_client.hpp"
#include "core/provider.hpp"
#include "core/vault.hpp"

namespace boost::asio {
class io_context;
}

namespace keyturn {

struct VaultProviderSpec {
    enum class Kind { token, lease };
    Kind kind = Kind::token;
    VaultEndpoint endpoint;
    // A file (mode 0600) holding a Vault token: vault_token's first token, vault_lease's
    // token for every request.
    std::string token_file;
    // vault_token: AppRole login, configured when role_id_file is set.
    std::string role_id_file;
    std::string secret_id_file;
    std::string approle_mount = "approle";
    // vault_lease: the path to read, such as database/creds/readonly.
    std::string path;
    // The renewal asked for; unset: the TTL the token or lease was first given.
    std::optional<Duration> increment;
    bool revoke_on_remove = false;
    std::optional<Duration> revoke_superseded_after;

    bool has_approle() const noexcept { return !role_id_file.empty(); }
    bool operator==(const VaultProviderSpec &) const = default;
};

// Receives operator messages (logins, revocations); called on io threads or from
// release(); must not throw or call back into the engine.
using VaultLogFunction = std::function<void(LogLevel level, std::string line)>;

class VaultProvider final : public Provider {
  public:
    // `io` runs the grace timers of superseded leases and must outlive the provider.
    VaultProvider(std::shared_ptr<HttpClient> client, boost::asio::io_context &io,
                  const VaultProviderSpec &spec, VaultLogFunction log);
    ~VaultProvider() override;

    void refresh(const RefreshRequest &request, Completion completion) override;
    bool wants_release() const override;
    void release(const ReleaseRequest &request, std::function<void()> done) override;

    // The state shared with requests in flight; declared here only so that the
    // implementation's parts can name it.
    class Core;

  private:
    std::shared_ptr<Core> core_;
};

// Reads a vault_token or vault_lease provider's settings from `r` (the credential's
// "provider" object) into out.vault. Mistakes are added to `errors` at their path.
class ObjectReader;
class JsonPath;
class JsonErrors;
struct HookSpec;
void read_vault_provider_spec(ObjectReader &r, const JsonPath &path, JsonErrors &errors,
                              const std::string &type, HookSpec &out);

}  // namespace keyturn
