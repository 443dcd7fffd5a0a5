#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/json_support.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"
#include "core/vault_kv_store.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

// The message of the Error that parsing `text` throws; fails the test otherwise.
std::string config_error(std::string_view text) {
    try {
        parse_engine_config(text);
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::config);
        return e.what();
    }
    ADD_FAILURE() << "no error for " << text;
    return {};
}

const char *kGood = R"({"id": "db", "provider": {"type": "hook", "name": "issuer"}})";

TEST(Config, AcceptsAFullConfiguration) {
    EngineConfig c = parse_engine_config(R"({
      "engine": {"threads": 2, "hook_timeout": "10s", "drain_timeout": 1.5,
                 "http_connections_per_origin": 8},
      "credentials": [{
        "id": "db", "provider": {"type": "hook", "name": "issuer"},
        "store": {"type": "file", "path": "/tmp/db.json"},
        "policy": {"refresh_at": 0.5, "lead": "2m", "jitter": 0.2,
                   "backoff": {"initial": "250ms", "multiplier": 3, "max": "1h", "jitter": 0}},
        "hook_timeout": 3, "serve_stale": true, "metadata": {"team": "payments"}
      }]})");
    EXPECT_EQ(c.engine.threads, 2);
    EXPECT_EQ(c.engine.hook_timeout, 10s);
    EXPECT_EQ(c.engine.drain_timeout, 1500ms);
    EXPECT_EQ(c.engine.http_connections_per_origin, 8);
    ASSERT_EQ(c.credentials.size(), 1u);
    const CredentialSpec &s = c.credentials[0];
    EXPECT_EQ(s.id, "db");
    EXPECT_EQ(s.provider.name, "issuer");
    EXPECT_EQ(s.store.kind, StoreSpec::Kind::file);
    EXPECT_EQ(s.store.path, "/tmp/db.json");
    EXPECT_DOUBLE_EQ(s.policy.refresh_at, 0.5);
    EXPECT_EQ(s.policy.lead, 120s);
    EXPECT_EQ(s.policy.backoff.initial, 250ms);
    EXPECT_EQ(s.policy.backoff.max, 3600s);
    EXPECT_EQ(s.hook_timeout, 3s);
    EXPECT_TRUE(s.serve_stale);
    EXPECT_EQ(s.metadata.at("team"), "payments");
}

TEST(Config, EmptyDocumentGivesDefaults) {
    EngineConfig c = parse_engine_config("{}");
    EXPECT_EQ(c.engine.threads, 1);
    EXPECT_EQ(c.engine.hook_timeout, 30s);
    EXPECT_EQ(c.engine.http_connections_per_origin, 32);
    EXPECT_TRUE(c.credentials.empty());
}

TEST(Config, JitterOutOfRangeNamesItsPath) {
    std::string doc = std::string(R"({"credentials": [)") + kGood + "," + kGood +
                      R"(, {"id": "c", "provider": {"type": "hook", "name": "h"},
                            "policy": {"jitter": 0.7}}]})";
    // (the two first entries share an id, which is reported too)
    std::string message = config_error(doc);
    EXPECT_NE(message.find("credentials[2].policy.jitter: expected a number between 0 and 0.5"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("credentials[1].id: duplicate id \"db\""), std::string::npos) << message;
}

TEST(Config, UnknownKeysAreRejectedAtTheirPath) {
    std::string message = config_error(R"({"engine": {"thread": 2}, "credential": []})");
    EXPECT_NE(message.find("engine.thread: unknown key"), std::string::npos) << message;
    EXPECT_NE(message.find("credential: unknown key"), std::string::npos) << message;
}

TEST(Config, WrongTypesSayWhatWasExpected) {
    std::string message = config_error(R"({"engine": {"threads": "two",
                                                       "http_connections_per_origin": 0},
        "credentials": [{"id": 5, "provider": {"type": "hook", "name": "h"},
                         "serve_stale": "yes", "metadata": {"k": 1}}]})");
    EXPECT_NE(message.find("engine.threads: expected a whole number from 1 to 64"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("engine.http_connections_per_origin: expected a whole number from 1 "
                           "to 1024"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("credentials[0].id: expected a string"), std::string::npos) << message;
    EXPECT_NE(message.find("credentials[0].serve_stale: expected true or false"), std::string::npos)
        << message;
    EXPECT_NE(message.find("credentials[0].metadata.k: expected a string"), std::string::npos)
        << message;
}

TEST(Config, MissingRequiredFieldsAreNamed) {
    std::string message = config_error(R"({"credentials": [{"provider": {"type": "hook"}}]})");
    EXPECT_NE(message.find("credentials[0].id: is required"), std::string::npos) << message;
    EXPECT_NE(message.find("credentials[0].provider.name: is required"), std::string::npos)
        << message;
}

TEST(Config, BadDurationsAndStoresAreExplained) {
    std::string message = config_error(R"({"engine": {"hook_timeout": "soon"},
        "credentials": [{"id": "a", "provider": {"type": "hook", "name": "h"},
                         "store": {"type": "disk"},
                         "policy": {"backoff": {"initial": "10s", "max": "1s"}}}]})");
    EXPECT_NE(message.find("engine.hook_timeout: expected a duration"), std::string::npos)
        << message;
    EXPECT_NE(
        message.find("credentials[0].store.type: expected \"memory\", \"file\" or \"vault_kv\""),
        std::string::npos)
        << message;
    EXPECT_NE(message.find("credentials[0].policy.backoff.max: must not be shorter"),
              std::string::npos)
        << message;
}

TEST(Config, InvalidIdentifiersAreRejected) {
    std::string message = config_error(R"({"credentials": [
        {"id": "has space", "provider": {"type": "hook", "name": "h"}},
        {"id": "", "provider": {"type": "hook", "name": "h"}}]})");
    EXPECT_NE(message.find("credentials[0].id: id may contain only"), std::string::npos) << message;
    EXPECT_NE(message.find("credentials[1].id: id is empty"), std::string::npos) << message;
}

TEST(Config, MalformedJsonIsReportedNotCrashed) {
    EXPECT_NE(config_error("{\"engine\": ").find("not valid JSON"), std::string::npos);
    EXPECT_NE(config_error("[]").find("expected an object"), std::string::npos);
    EXPECT_NE(config_error("").find("not valid JSON"), std::string::npos);
    std::string deep(10000, '[');
    EXPECT_NE(config_error(deep).find("not valid JSON"), std::string::npos);
}

TEST(Config, AnOverlongKeyIsShortenedInTheMessage) {
    std::string key(2'000'000, 'k');
    std::string message = config_error("{\"" + key + "\": 1}");
    EXPECT_LT(message.size(), 200u);
    EXPECT_NE(message.find("unknown key"), std::string::npos);
}

TEST(CredentialSpec, ParsesAloneWithPathsFromItsRoot) {
    CredentialSpec s = parse_credential_spec(kGood);
    EXPECT_EQ(s.id, "db");
    EXPECT_EQ(s.store.kind, StoreSpec::Kind::memory);
    try {
        parse_credential_spec(R"({"id": "x", "provider": {"type": "hook", "name": "h"},
                                  "policy": {"refresh_at": 1.5}})");
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find(
                      "policy.refresh_at: expected a number between 0.05 and 0.95"),
                  std::string::npos)
            << e.what();
    }
}

// Large configurations are read on one thread and handed to the sink on another;
// order, duplicates and their paths must come out as with a small one.
std::string many_credentials(int count, int duplicate_at) {
    std::string doc = R"({"credentials": [)";
    for (int i = 0; i < count; ++i) {
        int n = (i == duplicate_at) ? 7 : i;
        if (i != 0) doc += ",";
        doc +=
            R"({"id": "c)" + std::to_string(n) + R"(", "provider": {"type": "hook", "name": "h"}})";
    }
    return doc + "]}";
}

TEST(Config, ALargeConfigurationArrivesInOrder) {
    std::vector<std::string> ids;
    load_engine_config(
        many_credentials(10'000, -1),
        [](const EngineSettings &, std::size_t count) { EXPECT_EQ(count, 10'000u); },
        [&](CredentialSpec &&spec) { ids.push_back(spec.id); });
    ASSERT_EQ(ids.size(), 10'000u);
    for (int i = 0; i < 10'000; ++i)
        ASSERT_EQ(ids[i], "c" + std::to_string(i));
}

TEST(Config, ALargeConfigurationReportsADuplicateAtItsPath) {
    std::string message = config_error(many_credentials(10'000, 9'000));
    EXPECT_NE(message.find("credentials[9000].id: duplicate id \"c7\""), std::string::npos)
        << message.substr(0, 300);
}

}  // namespace
}  // namespace keyturn

namespace keyturn {
namespace {

TEST(Config, VaultProviderMistakesAreExplainedAtTheirPath) {
    std::string message = config_error(R"({"credentials": [
        {"id": "t", "provider": {"type": "vault_token", "address": "https://v:8200",
                                 "token_file": "/t", "increment": "soon"}},
        {"id": "l", "provider": {"type": "vault_lease", "address": "ftp://v",
                                 "token_file": "/t", "revoke_on_remove": 1}}]})");
    EXPECT_NE(message.find("credentials[0].provider.increment: expected a duration"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("credentials[1].provider.address: not a usable URL"), std::string::npos)
        << message;
    EXPECT_NE(message.find("credentials[1].provider.path: "), std::string::npos) << message;
    EXPECT_NE(message.find("credentials[1].provider.revoke_on_remove: expected true or false"),
              std::string::npos)
        << message;
}

// The fast reader for the common spec shape and the general reader must agree: the
// same spec for valid text, the same message for invalid text.
TEST(CredentialSpec, TheFastAndTheGeneralReaderAgree) {
    const char *cases[] = {
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "policy": {"jitter": 0}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"},
            "policy": {"refresh_at": 0.5, "lead": "30s", "jitter": 0.25},
            "store": {"type": "file", "path": "/var/lib/a.json"}, "hook_timeout": 2.5,
            "serve_stale": true, "metadata": {"team": "pay", "env": "prod"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "store": {"type": "memory"}})",
        R"({"id": "", "provider": {"type": "hook", "name": "h"}})",
        R"({"id": "a b", "provider": {"type": "hook", "name": "h"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": ""}})",
        R"({"id": "a", "provider": {"type": "hook"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "policy": {"jitter": 0.9}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "policy": {"refresh_at": 1}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "hook_timeout": 0})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "serve_stale": 1})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "metadata": {"k": 1}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "store": {"type": "file"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "extra": true})",
        R"({"id": "a", "id": "b", "provider": {"type": "hook", "name": "h"}})",
        R"({"provider": {"type": "hook", "name": "h"}})",
        R"({"id": "a"})",
        R"({"id": 7, "provider": {"type": "hook", "name": "h"}})",
        // Vault providers are read by the general reader only; the fast one steps aside.
        // (Valid ones are left out: their settings are compared by identity.)
        R"({"id": "a", "provider": {"type": "vault_token", "address": "https://v:8200",
            "token_file": "/t", "increment": "soon"}})",
        R"({"id": "a", "provider": {"type": "vault_lease", "address": "https://v:8200"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"}, "store": {"type": "vault_kv"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"},
            "store": {"type": "vault_kv", "address": "http://127.0.0.1:8200", "mount": 1,
                      "path": "a", "token_file": "/t"}})",
        R"({"id": "a", "provider": {"type": "hook", "name": "h"},
            "store": {"type": "file", "path": "/a.json", "token_file": "/t"}})",
    };
    for (const char *text : cases) {
        SCOPED_TRACE(text);
        std::optional<CredentialSpec> fast;
        std::string fast_error;
        try {
            fast = parse_credential_spec(text);
        } catch (const Error &e) {
            fast_error = e.what();
        }
        JsonErrors errors;
        boost::json::value doc = boost::json::parse(text);
        std::optional<CredentialSpec> general = read_credential_spec(doc, JsonPath(), errors);
        if (general) {
            ASSERT_TRUE(fast) << fast_error;
            EXPECT_TRUE(*fast == *general);
        } else {
            EXPECT_FALSE(fast);
            EXPECT_EQ(fast_error, "credential spec: " + errors.text());
        }
    }
}

// --- Vault KV stores ---------------------------------------------------------------------

std::string spec_error(std::string_view text) {
    try {
        parse_credential_spec(text);
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::config);
        return e.what();
    }
    ADD_FAILURE() << "no error for " << text;
    return {};
}

TEST(VaultKvConfig, ReadsEveryKey) {
    CredentialSpec spec = parse_credential_spec(R"({"id": "db",
        "provider": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "https://vault.example.com:8200/",
                  "mount": "/kv/", "path": "app/db", "token_file": "/etc/keyturn/token",
                  "namespace": "team-a",
                  "tls": {"ca_file": "/etc/ssl/vault-ca.pem"},
                  "timeouts": {"connect": "2s", "request": "4s"}}})");
    ASSERT_EQ(spec.store.kind, StoreSpec::Kind::vault_kv);
    ASSERT_TRUE(spec.store.vault_kv);
    const VaultKvStoreSpec &kv = *spec.store.vault_kv;
    EXPECT_EQ(kv.address, "https://vault.example.com:8200");
    EXPECT_EQ(kv.mount, "kv");
    EXPECT_EQ(kv.path, "app/db");
    EXPECT_EQ(kv.token_file, "/etc/keyturn/token");
    EXPECT_EQ(kv.vault_namespace, "team-a");
    EXPECT_EQ(kv.tls.ca_file, "/etc/ssl/vault-ca.pem");
    EXPECT_EQ(kv.options.connect_timeout, 2s);
    EXPECT_EQ(kv.options.request_timeout, 4s);
    EXPECT_EQ(describe_vault_kv(kv), "vault kv https://vault.example.com:8200/kv/app/db");
}

TEST(VaultKvConfig, TheMountDefaultsToSecretAndTheRequestTimeoutIsShort) {
    CredentialSpec spec = parse_credential_spec(R"({"id": "db",
        "provider": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "http://127.0.0.1:8200", "path": "app/db",
                  "token_file": "/run/token"}})");
    ASSERT_TRUE(spec.store.vault_kv);
    EXPECT_EQ(spec.store.vault_kv->mount, "secret");
    EXPECT_EQ(spec.store.vault_kv->options.request_timeout, 10s);
}

TEST(VaultKvConfig, MistakesAreNamedAtTheirPaths) {
    std::string message = spec_error(R"({"id": "db", "provider": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "http://vault.example.com:8200",
                  "mount": 7, "path": "app//db", "tls": {"client_cert_file": "/c.pem"},
                  "timeouts": {"request": 0}, "shape": "round"}})");
    for (const char *expected : {
             "store.address: must be https://",
             "store.mount: expected a string",
             "store.path: expected a Vault path",
             "store.token_file: is required",
             "store.tls: give both client_cert_file and client_key_file",
             "store.timeouts.request: expected a duration",
             "store.shape: unknown key",
         }) {
        EXPECT_NE(message.find(expected), std::string::npos) << expected << "\n" << message;
    }

    message = spec_error(R"({"id": "db", "provider": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "vault:8200", "path": "",
                  "token_file": "", "namespace": ""}})");
    for (const char *expected : {
             "store.address: not a usable URL",
             "store.path: expected a Vault path",
             "store.token_file: expected the path of a file",
             "store.namespace: expected a Vault namespace",
         }) {
        EXPECT_NE(message.find(expected), std::string::npos) << expected << "\n" << message;
    }
}

// Every HTTP-based provider reads "tls", "timeouts" and "max_response_bytes" the same
// way, and names a mistake inside them by its full path.
TEST(HttpOptionsConfig, MistakesInsideTlsAndTimeoutsAreNamedForEveryProvider) {
    const char *providers[] = {
        R"("type": "oauth2", "token_url": "https://idp.example/token", "client_id": "app")",
        R"("type": "http_json", "url": "https://api.example/refresh",
           "response": {"value": "/token"})",
        R"("type": "vault_lease", "address": "https://vault.example", "path": "db/creds/ro",
           "token_file": "/run/token")",
    };
    for (const char *provider : providers) {
        const std::string message =
            spec_error(std::string(R"({"id": "c", "provider": {)") + provider + R"(,
            "tls": {"client_key_file": "/k.pem", "verify": true},
            "timeouts": {"connect": "soon", "request": 0, "idle": 3},
            "max_response_bytes": 10}})");
        for (const char *expected : {
                 "provider.tls: give both client_cert_file and client_key_file",
                 "provider.tls.verify: unknown key",
                 "provider.timeouts.connect: expected a duration",
                 "provider.timeouts.request: expected a duration",
                 "provider.timeouts.idle: unknown key",
                 "provider.max_response_bytes: expected",
             }) {
            EXPECT_NE(message.find(expected), std::string::npos) << expected << "\n" << message;
        }
    }
}

TEST(SeedConfig, AFileOrAVaultKvSecret) {
    CredentialSpec file = parse_credential_spec(R"({"id": "c", "provider": {"type": "hook",
        "name": "h"}, "seed": {"file": "/etc/keyturn/c.json", "format": "token_document"}})");
    EXPECT_EQ(file.seed_file, "/etc/keyturn/c.json");
    EXPECT_EQ(file.seed_format, "token_document");
    EXPECT_FALSE(file.seed_vault_kv);

    CredentialSpec kv = parse_credential_spec(R"({"id": "c", "provider": {"type": "hook",
        "name": "h"}, "seed": {"vault_kv": {"address": "https://vault.example:8200",
        "mount": "kv", "path": "/consoles/cache/", "token_file": "/run/token"}}})");
    ASSERT_TRUE(kv.seed_vault_kv);
    EXPECT_EQ(kv.seed_vault_kv->mount, "kv");
    EXPECT_EQ(kv.seed_vault_kv->path, "consoles/cache");
    EXPECT_EQ(kv.seed_format, "refresh_token");
    EXPECT_EQ(kv.seed_field, "refresh_token");
    EXPECT_TRUE(kv.seed_file.empty());
}

TEST(SeedConfig, MistakesAreNamedAtTheirPath) {
    const std::string head = R"({"id": "c", "provider": {"type": "hook", "name": "h"}, "seed": )";
    const std::pair<const char *, const char *> cases[] = {
        {R"({})", "seed.file: is required"},
        {R"({"file": "/a", "vault_kv": {"address": "https://v", "path": "p",
            "token_file": "/t"}})",
         "seed.vault_kv: a seed is a file or a Vault KV secret, not both"},
        {R"({"vault_kv": {"type": "vault_kv", "address": "https://v", "path": "p",
            "token_file": "/t"}})",
         "seed.vault_kv.type: unknown key"},
        {R"({"vault_kv": {"address": "http://vault.example", "token_file": "/t"}})",
         "seed.vault_kv.address: must be https://"},
        {R"({"vault_kv": {"address": "https://v", "token_file": "/t"}})",
         "seed.vault_kv.path: is required"},
        {R"({"vault_kv": "secret/app"})", "seed.vault_kv: expected an object"},
        {R"({"file": "/a", "field": "token"})",
         "seed.field: only a Vault KV seed of format \"refresh_token\" has a field"},
        {R"({"vault_kv": {"address": "https://v", "path": "p", "token_file": "/t"},
            "format": "token_document", "field": "token"})",
         "seed.field: only a Vault KV seed of format \"refresh_token\" has a field"},
        {R"({"vault_kv": {"address": "https://v", "path": "p", "token_file": "/t"},
            "field": ""})",
         "seed.field: expected the name of a field"},
        {R"({"file": "/a", "format": "jwt"})",
         "seed.format: expected \"refresh_token\" or \"token_document\""},
    };
    for (const auto &[seed, expected] : cases) {
        const std::string message = spec_error(head + seed + "}");
        EXPECT_NE(message.find(expected), std::string::npos) << expected << "\n" << message;
    }
}

TEST(VaultKvConfig, FileAndMemoryStoresRefuseVaultKeys) {
    std::string message = spec_error(R"({"id": "db", "provider": {"type": "hook", "name": "h"},
        "store": {"type": "file", "path": "/tmp/x.json", "mount": "secret"}})");
    EXPECT_NE(message.find("store.mount: unknown key"), std::string::npos) << message;
}

TEST(VaultKvConfig, ASecretTakesTheSameStore) {
    SecretSpec spec = parse_secret_spec(R"({"id": "db-app", "hook": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "http://127.0.0.1:8200", "path": "db-app",
                  "token_file": "/run/token"}})");
    EXPECT_EQ(spec.store.kind, StoreSpec::Kind::vault_kv);
    ASSERT_TRUE(spec.store.vault_kv);
    EXPECT_EQ(spec.store.vault_kv->path, "db-app");
}

TEST(VaultKvConfig, PathsInAConfigurationStartAtTheCredentialOrSecret) {
    std::string message = config_error(R"({"credentials": [{"id": "db",
        "provider": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "https://vault.example.com", "mount": ["kv"],
                  "path": "app/db", "token_file": "/run/token"}}],
        "secrets": [{"id": "pw", "hook": {"type": "hook", "name": "h"},
                     "store": {"type": "vault_kv", "address": "https://vault.example.com",
                               "path": "app/pw"}}]})");
    EXPECT_NE(message.find("credentials[0].store.mount: expected a string"), std::string::npos)
        << message;
    EXPECT_NE(message.find("secrets[0].store.token_file: is required"), std::string::npos)
        << message;
}

// The fast reader leaves a vault_kv store to the general reader, and the spec it then
// gives is the general reader's.
TEST(VaultKvConfig, TheFastReaderHandsVaultKvStoresToTheGeneralReader) {
    const char *text = R"({"id": "a", "provider": {"type": "hook", "name": "h"},
        "store": {"type": "vault_kv", "address": "http://127.0.0.1:8200", "path": "app/a",
                  "token_file": "/run/token"}})";
    CredentialSpec fast = parse_credential_spec(text);
    JsonErrors errors;
    boost::json::value doc = boost::json::parse(text);
    std::optional<CredentialSpec> general = read_credential_spec(doc, JsonPath(), errors);
    ASSERT_TRUE(general) << errors.text();
    ASSERT_TRUE(fast.store.vault_kv && general->store.vault_kv);
    EXPECT_EQ(fast.store.kind, general->store.kind);
    EXPECT_EQ(describe_vault_kv(*fast.store.vault_kv), describe_vault_kv(*general->store.vault_kv));
    EXPECT_EQ(fast.store.vault_kv->token_file, general->store.vault_kv->token_file);
}

}  // namespace
}  // namespace keyturn
