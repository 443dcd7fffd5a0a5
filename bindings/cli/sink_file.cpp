#include "bindings/cli/sink_file.hpp"

#include <stdexcept>

#include "core/status.hpp"
#include "core/store.hpp"

namespace keyturn::agent {

void write_sink_file(const std::string &path, std::string_view bytes, unsigned mode) {
    try {
        write_file_atomically(path, bytes, mode);
    } catch (const Error &e) {
        // The store's wording ("file store ...") would mislead an operator here.
        std::string text = e.what();
        const std::string prefix = "file store ";
        if (text.rfind(prefix, 0) == 0) text = "sink " + text.substr(prefix.size());
        throw std::runtime_error(text);
    }
}

}  // namespace keyturn::agent
