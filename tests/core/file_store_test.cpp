#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/json_support.hpp"
#include "core/status.hpp"
#include "core/store.hpp"

namespace keyturn {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct SimulatedCrash {
    std::string step;
};

class FileStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("keyturn-store-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        path_ = dir_ / "token.json";
    }
    void TearDown() override {
        FileStore::set_fault_hook_for_testing(nullptr);
        fs::remove_all(dir_);
    }

    static Snapshot snapshot(std::string_view value, std::uint64_t version) {
        Snapshot s;
        s.value = SecretBytes(value);
        s.refresh =
            SecretBytes(std::string_view("kt-secret-SENTINEL-refresh-" + std::to_string(version)));
        s.issued_at = TimePoint(1'700'000'000s);
        s.expires_at = s.issued_at + 3600s;
        s.version = version;
        s.metadata["scope"] = "read";
        return s;
    }

    std::vector<fs::path> files() const {
        std::vector<fs::path> out;
        for (auto &e : fs::directory_iterator(dir_))
            out.push_back(e.path().filename());
        return out;
    }

    fs::path dir_, path_;
};

TEST_F(FileStoreTest, RoundTripsEverythingWithMode0600) {
    FileStore store(path_);
    EXPECT_FALSE(store.load().has_value());
    store.persist(snapshot("kt-secret-SENTINEL-value", 3));

    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto loaded = FileStore(path_).load();
    ASSERT_TRUE(loaded);
    EXPECT_EQ(loaded->value.reveal(), "kt-secret-SENTINEL-value");
    EXPECT_EQ(loaded->refresh->reveal(), "kt-secret-SENTINEL-refresh-3");
    EXPECT_EQ(loaded->version, 3u);
    EXPECT_EQ(loaded->expires_at, TimePoint(1'700'003'600s));
    EXPECT_EQ(loaded->metadata.at("scope"), "read");
    // Only the file itself remains: no temporary file is left behind.
    EXPECT_EQ(files(), std::vector<fs::path>{"token.json"});
}

TEST_F(FileStoreTest, KeepsBinaryValuesWithNulBytes) {
    FileStore store(path_);
    const char raw[] = {'\0', '\xff', 'k', '\0', '\x80'};
    Snapshot s = snapshot("", 1);
    s.value = SecretBytes(raw, sizeof raw);
    store.persist(s);
    auto loaded = store.load();
    ASSERT_TRUE(loaded);
    EXPECT_EQ(loaded->value.reveal(), std::string_view(raw, sizeof raw));
}

TEST_F(FileStoreTest, ACrashAtAnyStepLeavesTheOldOrTheNewFileWhole) {
    for (std::string step : {"created", "written", "synced", "renamed"}) {
        SCOPED_TRACE(step);
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        FileStore store(path_);
        store.persist(snapshot("kt-secret-SENTINEL-old", 1));

        FileStore::set_fault_hook_for_testing([step](std::string_view at) {
            if (at == step) throw SimulatedCrash{std::string(at)};
        });
        EXPECT_THROW(store.persist(snapshot("kt-secret-SENTINEL-new", 2)), SimulatedCrash);
        FileStore::set_fault_hook_for_testing(nullptr);

        // What a restarted process finds: one whole snapshot, old or new.
        auto loaded = FileStore(path_).load();
        ASSERT_TRUE(loaded);
        if (step == "renamed") {
            EXPECT_EQ(loaded->value.reveal(), "kt-secret-SENTINEL-new");
            EXPECT_EQ(loaded->version, 2u);
        } else {
            EXPECT_EQ(loaded->value.reveal(), "kt-secret-SENTINEL-old");
            EXPECT_EQ(loaded->version, 1u);
        }
        // And a later write still works, whatever the crash left behind.
        store.persist(snapshot("kt-secret-SENTINEL-after", 3));
        EXPECT_EQ(FileStore(path_).load()->version, 3u);
    }
}

TEST_F(FileStoreTest, RefusesAFileOthersCanRead) {
    FileStore(path_).persist(snapshot("kt-secret-SENTINEL-v", 1));
    ::chmod(path_.c_str(), 0644);
    try {
        FileStore(path_).load();
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::store);
        EXPECT_NE(std::string(e.what()).find("mode must be 0600"), std::string::npos);
    }
}

TEST_F(FileStoreTest, AMalformedFileIsAnErrorThatNamesTheFileAndNeverTheContent) {
    for (std::string content :
         {std::string("kt-secret-SENTINEL-garbage"), std::string(R"({"format": "other"})"),
          std::string(R"({"format": "keyturn-snapshot-1", "value": 5})"),
          std::string(R"({"format": "keyturn-snapshot-1",
                                               "value": "kt-secret-SENTINEL-x"})")}) {
        {
            std::ofstream f(path_);
            f << content;
        }
        ::chmod(path_.c_str(), 0600);
        try {
            FileStore(path_).load();
            FAIL() << content;
        } catch (const Error &e) {
            std::string message = e.what();
            EXPECT_EQ(e.status(), Status::store);
            EXPECT_NE(message.find(path_.string()), std::string::npos) << message;
            EXPECT_EQ(message.find("SENTINEL"), std::string::npos) << message;
        }
    }
}

TEST_F(FileStoreTest, AMissingDirectoryIsAClearError) {
    FileStore store(dir_ / "missing" / "token.json");
    try {
        store.persist(snapshot("kt-secret-SENTINEL-v", 1));
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.status(), Status::store);
        EXPECT_NE(std::string(e.what()).find("cannot create a temporary file"), std::string::npos);
    }
}

}  // namespace
}  // namespace keyturn
