#pragma once
// Where a credential's current state lives between runs. The engine persists a new
// snapshot before it publishes it, so that a refresh token the server has already
// rotated is never known only to memory.

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "core/rotation.hpp"
#include "core/secret.hpp"
#include "core/snapshot.hpp"

namespace keyturn {

class Store {
  public:
    virtual ~Store() = default;
    // The stored snapshot, or nothing when none was stored. Throws Error(store)
    // when something is stored but cannot be read.
    virtual std::optional<Snapshot> load() = 0;
    // Makes `snapshot` durable; on return it survives a crash. Throws Error(store).
    virtual void persist(const Snapshot &snapshot) = 0;
    // A short description for messages: "memory", "file /path".
    virtual std::string describe() const = 0;
};

// Keeps nothing beyond what the engine already holds in memory.
class MemoryStore final : public Store {
  public:
    std::optional<Snapshot> load() override { return std::nullopt; }
    void persist(const Snapshot &) override {}
    std::string describe() const override { return "memory"; }
};

// A JSON file written atomically: a temporary file in the same directory, fsync,
// rename over the old file, fsync of the directory. Mode 0600.
class FileStore final : public Store {
  public:
    explicit FileStore(std::filesystem::path path);
    std::optional<Snapshot> load() override;
    void persist(const Snapshot &snapshot) override;
    std::string describe() const override { return "file " + path_.string(); }

    // Test-only fault injection: called with the name of each step of a write
    // ("created", "written", "synced", "renamed"); a hook that throws simulates a
    // crash at that point, leaving the files as a crash would.
    using FaultHook = std::function<void(std::string_view step)>;
    static void set_fault_hook_for_testing(FaultHook hook);

  private:
    std::filesystem::path path_;
};

// Where a rotating secret's versions and journal live. A persist is the journal
// write: it is durable before the next step of a rotation runs.
class SecretStore {
  public:
    virtual ~SecretStore() = default;
    // Throws Error(store) when something is stored but cannot be read.
    virtual std::optional<SecretState> load() = 0;
    // Throws Error(store).
    virtual void persist(const SecretState &state) = 0;
    virtual std::string describe() const = 0;
};

class MemorySecretStore final : public SecretStore {
  public:
    std::optional<SecretState> load() override { return std::nullopt; }
    void persist(const SecretState &) override {}
    std::string describe() const override { return "memory"; }
};

// A JSON file written as FileStore writes (atomic, durable, mode 0600).
class FileSecretStore final : public SecretStore {
  public:
    explicit FileSecretStore(std::filesystem::path path) : path_(std::move(path)) {}
    std::optional<SecretState> load() override;
    void persist(const SecretState &state) override;
    std::string describe() const override { return "file " + path_.string(); }

  private:
    std::filesystem::path path_;
};

// The file format, shared with tests: serialize to JSON text (scrubbed on release)
// and back. Throws Error(store) on a malformed document, naming the field.
void encode_snapshot(ScrubbedString &out, const Snapshot &snapshot);
Snapshot decode_snapshot(std::string_view text, std::string_view where);

// The two halves of every file keyturn keeps. Reading refuses a file that is not
// regular, is larger than 8 MiB, or is readable by group or others; a missing file
// gives nothing. Writing is atomic and durable as FileStore describes, and the
// fault hook applies to it. Both throw Error(store) naming the file and the cause.
std::optional<ScrubbedString> read_private_file(const std::filesystem::path &path);
// `mode` is set while the file still has its temporary name, so that `path` never
// shows the file with another mode.
void write_file_atomically(const std::filesystem::path &path, std::string_view bytes,
                           unsigned mode = 0600);

}  // namespace keyturn
