#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/json_support.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"

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
      "engine": {"threads": 2, "hook_timeout": "10s", "drain_timeout": 1.5},
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
    std::string message = config_error(R"({"engine": {"threads": "two"},
        "credentials": [{"id": 5, "provider": {"type": "hook", "name": "h"},
                         "serve_stale": "yes", "metadata": {"k": 1}}]})");
    EXPECT_NE(message.find("engine.threads: expected a whole number from 1 to 64"),
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
    EXPECT_NE(message.find("credentials[0].store.type: expected \"memory\" or \"file\""),
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

}  // namespace
}  // namespace keyturn
