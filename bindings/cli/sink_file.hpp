#pragma once
// Writing a sink: the file a program reads its credential or secret from.

#include <string>
#include <string_view>

namespace keyturn::agent {

// Replaces `path` with `bytes`, atomically and durably: a temporary file in the same
// directory is written, synced and given `mode`, then renamed over `path`, and the
// directory is synced. Readers see the old file or the new one, whole, and the name
// never points at a file whose mode differs from `mode`. The temporary file is 0600
// until it is complete, then takes `mode`. Throws std::runtime_error naming the path
// and the cause; the message never holds the bytes.
// Built on the stores' write_file_atomically().
void write_sink_file(const std::string &path, std::string_view bytes, unsigned mode);

}  // namespace keyturn::agent
