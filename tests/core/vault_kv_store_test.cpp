#include "core/vault_kv_store.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/json_support.hpp"
#include "core/status.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kToken = "hvs.SENTINELtoken";
constexpr std::string_view kValue = "SECRETKV-value";

VaultKvStoreSpec kv_spec() {
    VaultKvStoreSpec spec;
    spec.address = "https://vault.example.com:8200";
    spec.path = "app/db";
    spec.token_file = "/etc/keyturn/vault-token";
    return spec;
}

const std::string kWhere = describe_vault_kv(kv_spec());

// An answer as the HTTP client hands it over, without a socket.
HttpResult answer(std::string_view method, int status, std::string_view body) {
    std::string error;
    auto url = parse_http_url(vault_kv_data_url(kv_spec()), &error);
    EXPECT_TRUE(url) << error;
    return make_http_response(method, *url, status, {{"Content-Type", "application/json"}},
                              ScrubbedString(std::string(body)), TimePoint{});
}

// The message of the Error(store) that `f` throws.
template <class F>
std::string store_error(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::store);
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return {};
}

Snapshot sample_snapshot() {
    Snapshot s;
    s.value = SecretBytes(kValue);
    s.refresh = SecretBytes(std::string_view("SECRETKV-refresh"));
    s.issued_at = from_unix_seconds(1700000000);
    s.expires_at = from_unix_seconds(1700000300);
    s.version = 4;
    s.metadata.emplace("team", "payments");
    return s;
}

TEST(VaultKvRequest, DescribesTheStoreWithoutItsToken) {
    EXPECT_EQ(kWhere, "vault kv https://vault.example.com:8200/secret/app/db");
}

TEST(VaultKvRequest, TheDataUrlPercentEncodesEachSegment) {
    VaultKvStoreSpec spec = kv_spec();
    spec.mount = "team kv";
    spec.path = "app/db user?x";
    EXPECT_EQ(vault_kv_data_url(spec),
              "https://vault.example.com:8200/v1/team%20kv/data/app/db%20user%3Fx");
    EXPECT_EQ(vault_kv_data_url(kv_spec()), "https://vault.example.com:8200/v1/secret/data/app/db");
}

TEST(VaultKvRequest, HeadersCarryTheTokenTheNamespaceAndVaultsRequestMarker) {
    VaultKvStoreSpec spec = kv_spec();
    HttpHeaders plain = vault_kv_headers(spec, SecretBytes(kToken));
    EXPECT_EQ(find_header(plain, "X-Vault-Token"), kToken);
    EXPECT_EQ(find_header(plain, "X-Vault-Request"), "true");
    EXPECT_FALSE(find_header(plain, "X-Vault-Namespace"));

    spec.vault_namespace = "team-a";
    HttpHeaders namespaced = vault_kv_headers(spec, SecretBytes(kToken));
    EXPECT_EQ(find_header(namespaced, "X-Vault-Namespace"), "team-a");
}

TEST(VaultKvRequest, AWriteCarriesTheCheckAndSetVersionAndTheDocumentAsFields) {
    ScrubbedString document;
    encode_snapshot(document, sample_snapshot());
    ScrubbedString body;
    build_vault_kv_write(body, document.str(), 7);

    boost::json::value sent = boost::json::parse(body.str());
    EXPECT_EQ(sent.at("options").at("cas").to_number<int>(), 7);
    EXPECT_EQ(sent.at("data"), boost::json::parse(document.str()));
    EXPECT_EQ(sent.at("data").at("value").as_string(), kValue);
}

TEST(VaultKvAnswer, AMissingSecretIsNothingStoredAtVersionZero) {
    VaultKvRead read = read_vault_kv_answer(answer("GET", 404, R"({"errors":[]})"), kWhere);
    EXPECT_FALSE(read.document);
    EXPECT_EQ(read.version, 0u);
}

TEST(VaultKvAnswer, ADeletedLatestVersionIsNothingStoredButKeepsItsVersion) {
    VaultKvRead read = read_vault_kv_answer(
        answer("GET", 404,
               R"({"data":{"data":null,"metadata":{"version":5,"destroyed":false,
                   "deletion_time":"2024-01-01T00:00:00Z"}}})"),
        kWhere);
    EXPECT_FALSE(read.document);
    EXPECT_EQ(read.version, 5u);
}

TEST(VaultKvAnswer, AWrittenSnapshotReadsBackWithItsVersion) {
    ScrubbedString document;
    encode_snapshot(document, sample_snapshot());
    const std::string body = R"({"request_id":"r","lease_id":"","data":{"data":)" + document.str() +
                             R"(,"metadata":{"version":3}}})";

    VaultKvRead read = read_vault_kv_answer(answer("GET", 200, body), kWhere);
    EXPECT_EQ(read.version, 3u);
    ASSERT_TRUE(read.document);
    Snapshot back = decode_snapshot(read.document->str(), kWhere);
    const Snapshot sample = sample_snapshot();
    EXPECT_EQ(back.value, sample.value);
    EXPECT_EQ(back.refresh, sample.refresh);
    EXPECT_EQ(back.expires_at, sample.expires_at);
    EXPECT_EQ(back.version, 4u);
    EXPECT_EQ(back.metadata, sample.metadata);
}

TEST(VaultKvAnswer, AnUnknownMountIsAFailureNotAnEmptyStore) {
    std::string message = store_error([] {
        read_vault_kv_answer(
            answer("GET", 404, R"({"errors":["no handler for route \"kv/data/app/db\"."]})"),
            kWhere);
    });
    EXPECT_EQ(message.rfind(kWhere + ": cannot read: ", 0), 0u) << message;
    EXPECT_NE(message.find("no handler for route"), std::string::npos) << message;
}

TEST(VaultKvAnswer, PermissionDeniedGivesVaultsWordsAndTheStore) {
    std::string message = store_error([] {
        read_vault_kv_answer(answer("GET", 403, R"({"errors":["permission denied"]})"), kWhere);
    });
    EXPECT_EQ(message.rfind(kWhere, 0), 0u) << message;
    EXPECT_NE(message.find("HTTP 403"), std::string::npos) << message;
    EXPECT_NE(message.find("permission denied"), std::string::npos) << message;
}

TEST(VaultKvAnswer, AReadWithoutMetadataIsNotKvVersion2) {
    std::string message = store_error([] {
        read_vault_kv_answer(answer("GET", 200, R"({"data":{"value":"SECRETKV-v1"}})"), kWhere);
    });
    EXPECT_NE(message.find("KV version 2"), std::string::npos) << message;
    EXPECT_EQ(message.find("SECRETKV"), std::string::npos) << message;
}

TEST(VaultKvAnswer, AWriteGivesTheNewVersion) {
    const auto version = read_vault_kv_write_answer(
        answer("POST", 200,
               R"({"data":{"created_time":"2024-01-01T00:00:00Z","version":8,"destroyed":false}})"),
        7, kWhere);
    EXPECT_EQ(version, 8u);
}

TEST(VaultKvAnswer, ALostCheckAndSetSaysAnotherWriterChangedTheSecret) {
    std::string message = store_error([] {
        read_vault_kv_write_answer(
            answer("POST", 400,
                   R"({"errors":["check-and-set parameter did not match the current version"]})"),
            3, kWhere);
    });
    EXPECT_EQ(message.rfind(kWhere + ": not written: another writer changed the secret after "
                                     "version 3",
                            0),
              0u)
        << message;
    EXPECT_NE(message.find("check-and-set parameter did not match"), std::string::npos);
    EXPECT_NE(message.find("left as that writer made it"), std::string::npos);

    message = store_error([] {
        read_vault_kv_write_answer(
            answer("POST", 400,
                   R"({"errors":["check-and-set parameter did not match the current version"]})"),
            0, kWhere);
    });
    EXPECT_NE(message.find("another writer created the secret"), std::string::npos) << message;
}

TEST(VaultKvAnswer, OtherWriteFailuresNameTheStatusAndVaultsErrors) {
    std::string message = store_error([] {
        read_vault_kv_write_answer(answer("POST", 503, R"({"errors":["Vault is sealed"]})"), 1,
                                   kWhere);
    });
    EXPECT_EQ(message.rfind(kWhere + ": not written: POST ", 0), 0u) << message;
    EXPECT_NE(message.find("HTTP 503"), std::string::npos) << message;
    EXPECT_NE(message.find("Vault is sealed"), std::string::npos) << message;

    std::string error;
    auto url = parse_http_url(vault_kv_data_url(kv_spec()), &error);
    message = store_error([&] {
        read_vault_kv_write_answer(
            make_http_failure("POST", *url, HttpErrorKind::connect, "connection refused"), 1,
            kWhere);
    });
    EXPECT_NE(message.find("connection refused"), std::string::npos) << message;
}

TEST(VaultKvAnswer, AWriteAnsweredWithoutAVersionIsNotKvVersion2) {
    std::string message =
        store_error([] { read_vault_kv_write_answer(answer("PUT", 204, ""), 0, kWhere); });
    EXPECT_NE(message.find("KV version 2"), std::string::npos) << message;
}

}  // namespace
}  // namespace keyturn
