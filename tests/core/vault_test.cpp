#include "core/vault.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/json_support.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"
#include "core/vault_providers.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kMarker = "SECRETTOKEN";

std::optional<std::string_view> header(const HttpRequest &r, std::string_view name) {
    return find_header(r.headers, name);
}

TEST(VaultRequest, CarriesTheTokenTheNamespaceAndTheRequestGuard) {
    VaultEndpoint endpoint;
    endpoint.address = "https://vault.example:8200/";
    endpoint.vault_namespace = "team/a";
    endpoint.options.request_timeout = 2s;
    const SecretBytes token(std::string_view("hvs.SECRETTOKEN"));
    HttpRequest r = build_vault_request(endpoint, "POST", "/auth/token/renew-self", &token,
                                        vault_renew_self_body(90s));
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.url, "https://vault.example:8200/v1/auth/token/renew-self");
    EXPECT_EQ(header(r, "X-Vault-Token"), "hvs.SECRETTOKEN");
    EXPECT_EQ(header(r, "X-Vault-Namespace"), "team/a");
    EXPECT_EQ(header(r, "X-Vault-Request"), "true");
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(r.body.str(), R"({"increment":90})");
    EXPECT_EQ(r.options.request_timeout, 2s);
}

TEST(VaultRequest, OmitsTheTokenAndNamespaceWhenThereAreNone) {
    VaultEndpoint endpoint;
    endpoint.address = "http://127.0.0.1:8200";
    HttpRequest r = build_vault_request(endpoint, "GET", "database/creds/ro", nullptr);
    EXPECT_EQ(r.url, "http://127.0.0.1:8200/v1/database/creds/ro");
    EXPECT_FALSE(header(r, "X-Vault-Token"));
    EXPECT_FALSE(header(r, "X-Vault-Namespace"));
    EXPECT_FALSE(header(r, "Content-Type"));
    EXPECT_EQ(header(r, "X-Vault-Request"), "true");
    EXPECT_TRUE(r.body.str().empty());
}

TEST(VaultRequest, BodiesAreJsonWithWholeSecondsRoundedUp) {
    EXPECT_EQ(vault_renew_self_body(std::nullopt).str(), "{}");
    EXPECT_EQ(vault_renew_self_body(1500ms).str(), R"({"increment":2})");
    const SecretBytes lease(std::string_view("database/creds/ro/abc\"1"));
    EXPECT_EQ(vault_lease_renew_body(lease, 60s).str(),
              R"({"lease_id":"database/creds/ro/abc\"1","increment":60})");
    EXPECT_EQ(vault_lease_renew_body(lease, std::nullopt).str(),
              R"({"lease_id":"database/creds/ro/abc\"1"})");
    EXPECT_EQ(vault_lease_revoke_body(lease).str(), R"({"lease_id":"database/creds/ro/abc\"1"})");
    const SecretBytes role(std::string_view("role-1")), secret(std::string_view("SECRETTOKEN"));
    auto doc = boost::json::parse(vault_approle_login_body(role, secret).str());
    EXPECT_EQ(doc.at("role_id"), "role-1");
    EXPECT_EQ(doc.at("secret_id"), "SECRETTOKEN");
}

TEST(VaultErrors, AreJoinedTidiedAndNeverInventedForOtherBodies) {
    EXPECT_EQ(vault_errors_text(R"({"errors":["permission denied"]})"), "permission denied");
    EXPECT_EQ(vault_errors_text(R"({"errors":["a \"quoted\"\nline","second"]})"),
              "a  quoted  line; second");
    EXPECT_EQ(vault_errors_text(R"({"errors":[]})"), "");
    EXPECT_EQ(vault_errors_text("<html>Bad Gateway</html>"), "");
    EXPECT_EQ(vault_errors_text(""), "");
    EXPECT_EQ(vault_errors_text(R"({"errors":["1","2","3","4","5","6"]})"), "1; 2; 3; 4; ...");
}

TEST(VaultErrors, StatusesAreRefusedOrTransientAndNameVaultsWords) {
    auto denied = vault_status_failure(403, R"({"errors":["permission denied"]})", std::nullopt);
    EXPECT_EQ(denied.kind, VaultFailure::Kind::refused);
    EXPECT_EQ(denied.reason, "HTTP 403: permission denied");
    EXPECT_EQ(vault_status_failure(400, R"({"errors":["lease expired"]})", {}).kind,
              VaultFailure::Kind::refused);
    EXPECT_EQ(vault_status_failure(401, "", {}).kind, VaultFailure::Kind::refused);

    auto limited = vault_status_failure(429, R"({"errors":["rate limit quota exceeded"]})", 3s);
    EXPECT_EQ(limited.kind, VaultFailure::Kind::transient);
    EXPECT_EQ(limited.retry_after, 3s);
    EXPECT_EQ(limited.reason, "HTTP 429: rate limit quota exceeded");
    EXPECT_EQ(vault_status_failure(503, R"({"errors":["Vault is sealed"]})", {}).kind,
              VaultFailure::Kind::transient);
    EXPECT_EQ(vault_status_failure(502, "", {}).kind, VaultFailure::Kind::transient);

    // Vault answers 500 to a renewal past the max TTL: no retry can pass.
    auto past = vault_status_failure(500, R"({"errors":["past the max TTL, cannot renew"]})", {});
    EXPECT_EQ(past.kind, VaultFailure::Kind::refused);
}

TEST(VaultErrors, TransportFailuresKeepTheClientsMessageAndRetryUnlessLocal) {
    HttpResult reset;
    reset.kind = HttpErrorKind::connection;
    reset.error = "GET http://127.0.0.1:1/v1/x: connection reset";
    EXPECT_EQ(vault_transport_failure(reset).kind, VaultFailure::Kind::transient);
    EXPECT_EQ(vault_transport_failure(reset).reason, reset.error);
    HttpResult timeout;
    timeout.kind = HttpErrorKind::timeout;
    EXPECT_EQ(vault_transport_failure(timeout).kind, VaultFailure::Kind::transient);
    HttpResult ca;
    ca.kind = HttpErrorKind::tls_setup;
    EXPECT_EQ(vault_transport_failure(ca).kind, VaultFailure::Kind::local);
    HttpResult redirect;
    redirect.kind = HttpErrorKind::redirect;
    EXPECT_EQ(vault_transport_failure(redirect).kind, VaultFailure::Kind::local);
}

TEST(VaultLookup, GivesTheTtlTheCreationTtlAndRenewable) {
    auto outcome = interpret_vault_lookup(
        200,
        R"({"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
            "data":{"id":"hvs.SECRETTOKEN","ttl":42,"creation_ttl":60,"renewable":true,
                    "policies":["default"]},"warnings":null,"auth":null})",
        std::nullopt);
    ASSERT_TRUE(std::holds_alternative<VaultTokenInfo>(outcome));
    const auto &info = std::get<VaultTokenInfo>(outcome);
    EXPECT_EQ(info.ttl, 42s);
    EXPECT_EQ(info.creation_ttl, 60s);
    EXPECT_TRUE(info.renewable);
}

TEST(VaultLookup, AMalformedAnswerIsTransientAndNeverQuotesTheBody) {
    auto truncated = interpret_vault_lookup(200, R"({"data":{"id":"hvs.SECRETTOKEN","tt)", {});
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(truncated));
    const auto &f = std::get<VaultFailure>(truncated);
    EXPECT_EQ(f.kind, VaultFailure::Kind::transient);
    EXPECT_EQ(f.reason.find(kMarker), std::string::npos) << f.reason;
    EXPECT_NE(f.reason.find("not valid JSON"), std::string::npos) << f.reason;

    auto no_ttl = interpret_vault_lookup(200, R"({"data":{"id":"hvs.SECRETTOKEN"}})", {});
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(no_ttl));
    EXPECT_EQ(std::get<VaultFailure>(no_ttl).reason.find(kMarker), std::string::npos);

    auto denied = interpret_vault_lookup(403, R"({"errors":["permission denied"]})", {});
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(denied));
    EXPECT_EQ(std::get<VaultFailure>(denied).kind, VaultFailure::Kind::refused);
}

TEST(VaultAuth, ReadsTheAuthBlockOfARenewalOrALogin) {
    auto outcome = interpret_vault_auth(
        200,
        R"({"lease_id":"","renewable":false,"lease_duration":0,"data":null,"warnings":null,
            "auth":{"client_token":"hvs.SECRETTOKEN","accessor":"acc","lease_duration":30,
                    "renewable":true,"policies":["default"]}})",
        std::nullopt);
    ASSERT_TRUE(std::holds_alternative<VaultAuth>(outcome));
    const auto &auth = std::get<VaultAuth>(outcome);
    EXPECT_EQ(auth.client_token.reveal(), "hvs.SECRETTOKEN");
    EXPECT_EQ(auth.lease_duration, 30s);
    EXPECT_TRUE(auth.renewable);
    EXPECT_FALSE(auth.capped_warning);
}

TEST(VaultAuth, NoticesVaultsWarningThatTheTtlWasCapped) {
    auto outcome = interpret_vault_auth(
        200,
        R"({"warnings":["TTL of \"1m0s\" exceeded the effective max_ttl of \"12s\"; TTL value is capped accordingly"],
            "auth":{"client_token":"hvs.x","lease_duration":12,"renewable":true}})",
        std::nullopt);
    ASSERT_TRUE(std::holds_alternative<VaultAuth>(outcome));
    EXPECT_TRUE(std::get<VaultAuth>(outcome).capped_warning);
}

TEST(VaultAuth, WithoutAClientTokenTheAnswerIsMalformed) {
    auto outcome = interpret_vault_auth(200, R"({"auth":null,"data":{}})", std::nullopt);
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(outcome));
    EXPECT_EQ(std::get<VaultFailure>(outcome).kind, VaultFailure::Kind::transient);
    auto refused = interpret_vault_auth(400, R"({"errors":["invalid role or secret ID"]})", {});
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(refused));
    EXPECT_EQ(std::get<VaultFailure>(refused).kind, VaultFailure::Kind::refused);
    EXPECT_EQ(std::get<VaultFailure>(refused).reason, "HTTP 400: invalid role or secret ID");
}

TEST(VaultSecret, GivesTheDataAsJsonTextAndTheLease) {
    auto outcome = interpret_vault_secret(
        200,
        R"({"request_id":"r","lease_id":"database/creds/ro/abc","renewable":true,
            "lease_duration":3600,"data":{"username":"v-ro","password":"SECRETTOKEN"},
            "wrap_info":null,"warnings":null,"auth":null})",
        std::nullopt);
    ASSERT_TRUE(std::holds_alternative<VaultSecret>(outcome));
    const auto &s = std::get<VaultSecret>(outcome);
    EXPECT_EQ(s.data.str(), R"({"username":"v-ro","password":"SECRETTOKEN"})");
    EXPECT_EQ(s.lease_id.reveal(), "database/creds/ro/abc");
    EXPECT_EQ(s.lease_duration, 3600s);
    EXPECT_TRUE(s.renewable);
}

TEST(VaultSecret, ASecretWithoutALeaseIsNotRenewable) {
    auto outcome = interpret_vault_secret(
        200, R"({"lease_id":"","renewable":true,"lease_duration":0,"data":{"k":"v"}})", {});
    ASSERT_TRUE(std::holds_alternative<VaultSecret>(outcome));
    EXPECT_FALSE(std::get<VaultSecret>(outcome).renewable);
    EXPECT_TRUE(std::get<VaultSecret>(outcome).lease_id.empty());

    auto no_data = interpret_vault_secret(200, R"({"lease_id":"x","lease_duration":5})", {});
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(no_data));
}

TEST(VaultLeaseRenewal, ReadsTheNewDurationAndTheCappedWarning) {
    auto outcome = interpret_vault_lease_renewal(
        200,
        R"({"lease_id":"database/creds/ro/abc","renewable":true,"lease_duration":7,
            "warnings":["TTL of \"10s\" exceeded the effective max_ttl of \"7s\"; TTL value is capped accordingly"]})",
        std::nullopt);
    ASSERT_TRUE(std::holds_alternative<VaultLeaseRenewal>(outcome));
    const auto &r = std::get<VaultLeaseRenewal>(outcome);
    EXPECT_EQ(r.lease_duration, 7s);
    EXPECT_TRUE(r.renewable);
    EXPECT_TRUE(r.capped_warning);

    auto expired = interpret_vault_lease_renewal(400, R"({"errors":["lease expired"]})", {});
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(expired));
    EXPECT_EQ(std::get<VaultFailure>(expired).kind, VaultFailure::Kind::refused);
    EXPECT_EQ(std::get<VaultFailure>(expired).reason, "HTTP 400: lease expired");

    auto sealed = interpret_vault_lease_renewal(503, R"({"errors":["Vault is sealed"]})", 2s);
    ASSERT_TRUE(std::holds_alternative<VaultFailure>(sealed));
    EXPECT_EQ(std::get<VaultFailure>(sealed).kind, VaultFailure::Kind::transient);
    EXPECT_EQ(std::get<VaultFailure>(sealed).retry_after, 2s);
}

TEST(VaultRenewal, IsCappedWhenItGivesLessThanAskedOrVaultSaysSo) {
    EXPECT_FALSE(vault_renewal_capped(60s, 60s, false));
    EXPECT_TRUE(vault_renewal_capped(60s, 59s, false));
    EXPECT_TRUE(vault_renewal_capped(60s, 60s, true));
    // The increment travels in whole seconds, rounded up: 1.5 s asks for 2 s.
    EXPECT_FALSE(vault_renewal_capped(1500ms, 2s, false));
    EXPECT_TRUE(vault_renewal_capped(1500ms, 1s, false));
}

// --- configuration -------------------------------------------------------------

std::string config_error(const std::string &provider) {
    try {
        parse_engine_config(R"({"credentials": [{"id": "v", "provider": )" + provider + "}]}");
    } catch (const Error &e) {
        return e.what();
    }
    return {};
}

TEST(VaultConfig, ATokenProviderIsRead) {
    CredentialSpec spec = parse_credential_spec(
        R"({"id": "v", "provider": {"type": "vault_token", "address": "https://vault:8200",
            "token_file": "/etc/kt/token", "namespace": "team-a/",
            "approle": {"role_id_file": "/etc/kt/role", "secret_id_file": "/etc/kt/secret",
                        "mount": "ci-approle"},
            "increment": "1h", "revoke_on_remove": true, "revoke_superseded_after": "30s",
            "tls": {"ca_file": "/etc/kt/ca.pem"}, "timeouts": {"request": 3}}})");
    EXPECT_EQ(spec.provider.type, "vault_token");
    ASSERT_TRUE(spec.provider.vault);
    const VaultProviderSpec &v = *spec.provider.vault;
    EXPECT_EQ(v.kind, VaultProviderSpec::Kind::token);
    EXPECT_EQ(v.endpoint.address, "https://vault:8200");
    EXPECT_EQ(v.endpoint.vault_namespace, "team-a");
    EXPECT_EQ(v.token_file, "/etc/kt/token");
    EXPECT_TRUE(v.has_approle());
    EXPECT_EQ(v.secret_id_file, "/etc/kt/secret");
    EXPECT_EQ(v.approle_mount, "ci-approle");
    EXPECT_EQ(v.increment, 1h);
    EXPECT_TRUE(v.revoke_on_remove);
    EXPECT_EQ(v.revoke_superseded_after, 30s);
    EXPECT_EQ(v.endpoint.tls.ca_file, "/etc/kt/ca.pem");
    EXPECT_EQ(v.endpoint.options.request_timeout, 3s);
}

TEST(VaultConfig, ALeaseProviderIsRead) {
    CredentialSpec spec = parse_credential_spec(
        R"({"id": "db", "provider": {"type": "vault_lease", "address": "http://127.0.0.1:8200",
            "path": "/database/creds/readonly", "token_file": "/etc/kt/token"}})");
    ASSERT_TRUE(spec.provider.vault);
    EXPECT_EQ(spec.provider.vault->kind, VaultProviderSpec::Kind::lease);
    EXPECT_EQ(spec.provider.vault->path, "database/creds/readonly");
    EXPECT_FALSE(spec.provider.vault->increment);
    EXPECT_FALSE(spec.provider.vault->revoke_on_remove);
    EXPECT_EQ(spec.provider.vault->approle_mount, "approle");
}

TEST(VaultConfig, MistakesAreReportedAtTheirPath) {
    std::string m = config_error(
        R"({"type": "vault_token", "address": "http://vault.example:8200", "increment": "soon",
            "approle": {"role_id_file": "/r"}, "revoke_on_remove": "yes", "extra": 1})");
    EXPECT_NE(m.find("credentials[0].provider.increment: expected a duration"), std::string::npos)
        << m;
    EXPECT_NE(m.find("credentials[0].provider.address: must be https://"), std::string::npos) << m;
    EXPECT_NE(m.find("credentials[0].provider.approle.secret_id_file:"), std::string::npos) << m;
    EXPECT_NE(m.find("credentials[0].provider.revoke_on_remove: expected true or false"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("credentials[0].provider.extra:"), std::string::npos) << m;

    m = config_error(R"({"type": "vault_token", "address": "https://v"})");
    EXPECT_NE(m.find("credentials[0].provider.token_file: give a token_file, an approle"),
              std::string::npos)
        << m;

    m = config_error(R"({"type": "vault_lease", "address": "https://v", "path": "a/../b",
                         "revoke_superseded_after": -1})");
    EXPECT_NE(m.find("credentials[0].provider.token_file:"), std::string::npos) << m;
    EXPECT_NE(m.find("credentials[0].provider.path: path must not contain"), std::string::npos)
        << m;
    EXPECT_NE(m.find("credentials[0].provider.revoke_superseded_after: expected a duration"),
              std::string::npos)
        << m;

    m = config_error(R"({"type": "vault_lease", "address": "vault:8200", "token_file": "/t"})");
    EXPECT_NE(m.find("credentials[0].provider.address: not a usable URL"), std::string::npos) << m;
    EXPECT_NE(m.find("credentials[0].provider.path:"), std::string::npos) << m;
}

}  // namespace
}  // namespace keyturn
