#include "core/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/json_support.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

// A value and refresh material of 1 MiB each, base64-encoded, with room to spare.
constexpr std::size_t kMaxFileSize = 8u << 20;

std::mutex g_fault_mutex;
FileStore::FaultHook g_fault_hook;

void fault_point(std::string_view step) {
    FileStore::FaultHook hook;
    {
        std::lock_guard lock(g_fault_mutex);
        hook = g_fault_hook;
    }
    if (hook) hook(step);
}

[[noreturn]] void fail(const std::filesystem::path &path, const std::string &what, int err) {
    throw Error(Status::store,
                "file store " + path.string() + ": " + what + ": " + std::strerror(err));
}

// Closes a descriptor on every path out of a function.
class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }

  private:
    int fd_;
};

}  // namespace

void encode_snapshot(ScrubbedString &out, const Snapshot &s) {
    json::object o(scrubbing_storage());
    o["format"] = "keyturn-snapshot-1";
    o["version"] = s.version;
    put_secret(o, "value", s.value);
    if (s.refresh) put_secret(o, "refresh", *s.refresh);
    o["issued_at"] = to_unix_seconds(s.issued_at);
    o["expires_at"] = to_unix_seconds(s.expires_at);
    o["renewable"] = s.renewable;
    if (s.max_lifetime) o["max_lifetime"] = to_seconds(*s.max_lifetime);
    json::object meta(o.storage());
    for (const auto &[k, v] : s.metadata)
        meta[k] = v;
    o["metadata"] = std::move(meta);
    serialize_into(out, o);
}

Snapshot decode_snapshot(std::string_view text, std::string_view where) {
    json::value doc;
    try {
        doc = parse_secret_json(text, where);
    } catch (const Error &e) {
        throw Error(Status::store, e.what());
    }
    const json::object *o = doc.if_object();
    auto bad = [&](const std::string &why) {
        return Error(Status::store, std::string(where) + ": " + why);
    };
    if (o == nullptr) throw bad("expected a JSON object");
    const json::value *format = o->if_contains("format");
    if (format == nullptr || !format->is_string() || format->get_string() != "keyturn-snapshot-1") {
        throw bad("\"format\" is not \"keyturn-snapshot-1\"");
    }

    Snapshot s;
    auto value = get_secret(*o, "value", where);
    if (!value) throw bad("\"value\" is missing");
    s.value = std::move(*value);
    s.refresh = get_secret(*o, "refresh", where);

    auto number = [&](std::string_view key) -> std::optional<double> {
        const json::value *v = o->if_contains(key);
        if (v == nullptr) return std::nullopt;
        if (!v->is_number()) throw bad("\"" + std::string(key) + "\" is not a number");
        return v->to_number<double>();
    };
    auto issued = number("issued_at");
    auto expires = number("expires_at");
    if (!issued || !expires) throw bad("\"issued_at\" and \"expires_at\" are required");
    s.issued_at = from_unix_seconds(*issued);
    s.expires_at = from_unix_seconds(*expires);
    if (auto v = number("version")) s.version = static_cast<std::uint64_t>(*v);
    if (auto m = number("max_lifetime")) s.max_lifetime = seconds_to_duration(*m);
    if (const json::value *r = o->if_contains("renewable"); r && r->is_bool()) {
        s.renewable = r->get_bool();
    }
    if (const json::value *m = o->if_contains("metadata"); m && m->is_object()) {
        for (const auto &item : m->get_object()) {
            if (item.value().is_string()) {
                s.metadata.emplace(std::string(item.key()), std::string(item.value().get_string()));
            }
        }
    }
    return s;
}

FileStore::FileStore(std::filesystem::path path) : path_(std::move(path)) {}

void FileStore::set_fault_hook_for_testing(FaultHook hook) {
    std::lock_guard lock(g_fault_mutex);
    g_fault_hook = std::move(hook);
}

std::optional<Snapshot> FileStore::load() {
    std::optional<ScrubbedString> text = read_private_file(path_);
    if (!text) return std::nullopt;
    return decode_snapshot(text->str(), "file store " + path_.string());
}

void FileStore::persist(const Snapshot &snapshot) {
    ScrubbedString text;
    encode_snapshot(text, snapshot);
    write_file_atomically(path_, text.str());
}

std::optional<SecretState> FileSecretStore::load() {
    std::optional<ScrubbedString> text = read_private_file(path_);
    if (!text) return std::nullopt;
    return decode_secret_state(text->str(), "file store " + path_.string());
}

void FileSecretStore::persist(const SecretState &state) {
    ScrubbedString text;
    encode_secret_state(text, state);
    write_file_atomically(path_, text.str());
}

std::optional<ScrubbedString> read_private_file(const std::filesystem::path &path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
        if (errno == ENOENT) return std::nullopt;
        fail(path, "cannot open", errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) fail(path, "cannot stat", errno);
    if (!S_ISREG(st.st_mode)) {
        throw Error(Status::store, "file store " + path.string() + ": not a regular file");
    }
    if ((st.st_mode & 077) != 0) {
        throw Error(Status::store, "file store " + path.string() +
                                       ": readable by group or others (mode must be 0600)");
    }
    if (static_cast<std::size_t>(st.st_size) > kMaxFileSize) {
        throw Error(Status::store, "file store " + path.string() + ": too large");
    }

    std::optional<ScrubbedString> text(std::in_place);
    text->str().resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < text->str().size()) {
        ssize_t n = ::read(fd.get(), text->str().data() + done, text->str().size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(path, "cannot read", errno);
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    text->str().resize(done);
    return text;
}

void write_file_atomically(const std::filesystem::path &path, std::string_view bytes,
                           unsigned mode) {
    std::filesystem::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    std::string temp = (dir / ("." + path.filename().string() + ".tmp.XXXXXX")).string();

    // mkstemp creates the file with mode 0600 and O_EXCL.
    Fd fd(::mkostemp(temp.data(), O_CLOEXEC));
    if (fd.get() < 0) fail(path, "cannot create a temporary file in " + dir.string(), errno);
    bool renamed = false;
    try {
        fault_point("created");
        std::size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail(path, "cannot write " + temp, errno);
            done += static_cast<std::size_t>(n);
        }
        fault_point("written");
        if (mode != 0600 && ::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
            fail(path, "cannot set the mode of " + temp, errno);
        }
        if (::fsync(fd.get()) != 0) fail(path, "cannot fsync " + temp, errno);
        if (::close(fd.release()) != 0) fail(path, "cannot close " + temp, errno);
        fault_point("synced");
        if (::rename(temp.c_str(), path.c_str()) != 0) fail(path, "cannot rename over", errno);
        renamed = true;
        fault_point("renamed");
    } catch (const Error &) {
        if (!renamed) ::unlink(temp.c_str());
        throw;
    }

    Fd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dirfd.get() < 0) fail(path, "cannot open directory " + dir.string(), errno);
    if (::fsync(dirfd.get()) != 0) fail(path, "cannot fsync directory " + dir.string(), errno);
}

}  // namespace keyturn
