#pragma once
// Providers that refresh over HTTPS: the OAuth2 refresh-token grant, and a JSON
// refresh API described by configuration. The protocol decisions are the pure
// functions of oauth2.hpp and json_refresh.hpp; these classes only send the request
// and hand the answer over.

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/http_client.hpp"
#include "core/json_refresh.hpp"
#include "core/oauth2.hpp"
#include "core/provider.hpp"

namespace keyturn {

struct HttpProviderSpec {
    std::string url;
    // oauth2: the client. The secret is read from `client_secret_file` (mode 0600).
    std::string client_id;
    std::string client_secret_file;
    OAuth2Client::Auth auth = OAuth2Client::Auth::basic;
    std::string scope;
    // http_json: the request and where the answer's fields are.
    std::string method = "POST";
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    TemplateEncoding body_encoding = TemplateEncoding::json;
    JsonResponseMapping response;
    // Both.
    HttpTlsOptions tls;
    HttpRequestOptions options;
    // The lifetime of a value whose answer gives none.
    Duration default_lifetime = std::chrono::hours(1);

    bool operator==(const HttpProviderSpec &) const = default;
};

class OAuth2Provider final : public Provider {
  public:
    // Throws Error(config | store) when the client secret file cannot be read.
    OAuth2Provider(std::shared_ptr<HttpClient> client, const HttpProviderSpec &spec);
    void refresh(const RefreshRequest &request, Completion completion) override;

  private:
    std::shared_ptr<HttpClient> http_;
    HttpProviderSpec spec_;
    OAuth2Client client_;
};

class HttpJsonProvider final : public Provider {
  public:
    HttpJsonProvider(std::shared_ptr<HttpClient> client, const HttpProviderSpec &spec);
    void refresh(const RefreshRequest &request, Completion completion) override;

  private:
    std::shared_ptr<HttpClient> http_;
    HttpProviderSpec spec_;
};

// Reads a file holding one secret (mode 0600 required); one trailing newline is
// dropped. Throws Error(store | config) naming the file.
SecretBytes read_secret_file(const std::string &path, std::string_view what);

}  // namespace keyturn
