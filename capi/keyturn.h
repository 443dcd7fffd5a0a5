/*
 * keyturn.h — the C interface of keyturn, and its manual.
 *
 * keyturn keeps expiring credentials fresh. An engine holds credentials; each has a
 * provider (for now: a hook you register here) that produces a new value before the
 * current one expires, a store that keeps the value across restarts, and a policy
 * that decides when to refresh and how to back off after failures.
 *
 * Conventions, followed by every function below:
 *
 *   - Every function returns an int status: KEYTURN_OK (0) on success, or one of the
 *     negative KEYTURN_E_* codes. Codes are never renumbered or reused.
 *   - After a failure, keyturn_last_error() returns a message for the last failure on
 *     the calling thread. It never returns NULL and never contains a secret value.
 *   - Out-parameters come first and are named `out`/`out_*`. They are written only on
 *     success, unless a function says otherwise.
 *   - Strings are UTF-8 and NUL-terminated unless a length is passed beside them.
 *     Secret values always travel with an explicit length and may contain NUL bytes.
 *   - Structured data (configuration, credential specs, hook requests and results,
 *     events, status) crosses as JSON text, so fields can be added without changing
 *     the ABI. Reading the current value does not: it copies bytes, with no JSON and
 *     no allocation.
 *   - Every free/close function accepts NULL and then does nothing.
 *   - Callbacks take `void *user_data` last. Where a release function is accepted,
 *     keyturn calls it exactly once, when it will never call the callback again.
 *   - No C++ exception ever crosses this interface; running out of memory is reported
 *     as KEYTURN_E_NO_MEMORY.
 *   - Every function may be called from any thread, except where it says otherwise.
 *
 * Limits: identifiers (credential ids, hook names) are 1 to 256 bytes of
 * [A-Za-z0-9._:@/-]; a secret value is at most 1 MiB; a credential spec or a hook
 * result is at most 4 MiB of JSON; an engine configuration at most 256 MiB.
 */
#ifndef KEYTURN_H
#define KEYTURN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KEYTURN_BUILDING_LIBRARY) && defined(__GNUC__)
#define KEYTURN_API __attribute__((visibility("default")))
#else
#define KEYTURN_API
#endif

/* ---------------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------------ */

#define KEYTURN_VERSION_MAJOR 0
#define KEYTURN_VERSION_MINOR 1
#define KEYTURN_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, comparable with keyturn_version_number(). */
#define KEYTURN_VERSION_NUMBER \
    (KEYTURN_VERSION_MAJOR * 10000 + KEYTURN_VERSION_MINOR * 100 + KEYTURN_VERSION_PATCH)
#define KEYTURN_VERSION_STRING "0.1.0"
/* Raised only when a published function or struct changes incompatibly. */
#define KEYTURN_ABI_VERSION 1

/* The version of the library loaded at run time, which may differ from the headers
 * a program was compiled with. Returns KEYTURN_VERSION_NUMBER of the library. */
KEYTURN_API int keyturn_version_number(void);
/* The same as a static string, such as "0.1.0". Never NULL; do not free. */
KEYTURN_API const char *keyturn_version_string(void);
/* KEYTURN_ABI_VERSION of the library loaded at run time. */
KEYTURN_API int keyturn_abi_version(void);

/* ---------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------ */

#define KEYTURN_OK 0
/* A required argument was NULL, a size was out of range, or an identifier was not
 * well formed. */
#define KEYTURN_E_INVALID_ARGUMENT (-1)
/* A configuration, credential spec or hook result was not valid JSON, or broke a
 * rule; the message names the JSON path and what was expected. */
#define KEYTURN_E_CONFIG (-2)
/* No credential, hook or subscription by that name or id. */
#define KEYTURN_E_NOT_FOUND (-3)
/* A credential or hook by that name already exists. */
#define KEYTURN_E_EXISTS (-4)
/* The call is not allowed in the engine's current state, or from this thread (for
 * example freeing an engine from inside one of its own callbacks). */
#define KEYTURN_E_STATE (-5)
/* The credential has no value yet: its first refresh has not succeeded. */
#define KEYTURN_E_NOT_READY (-6)
/* The credential's value has expired and it does not serve stale values. */
#define KEYTURN_E_EXPIRED (-7)
/* The caller's buffer is too small; the needed size was written to *out_len. */
#define KEYTURN_E_BUFFER_TOO_SMALL (-8)
/* The completion is unknown, was already used, timed out, or its engine is gone. */
#define KEYTURN_E_STALE_COMPLETION (-9)
/* The store could not persist a value. The value is still held in memory. */
#define KEYTURN_E_STORE (-10)
/* Memory could not be allocated. */
#define KEYTURN_E_NO_MEMORY (-11)
/* The credential was removed while a handle to it was open. */
#define KEYTURN_E_REMOVED (-12)
/* A bug in keyturn; the message says where. */
#define KEYTURN_E_INTERNAL (-13)

/* The message for the last failed call on this thread ("" when there was none).
 * Never NULL. Valid until the next keyturn call on the same thread; copy it to keep
 * it. Never contains a secret value: secrets appear, if at all, as a fingerprint
 * (the first 8 hex digits of the SHA-256 of the value). */
KEYTURN_API const char *keyturn_last_error(void);

/* A stable name for a status code, such as "KEYTURN_E_EXPIRED"; "KEYTURN_UNKNOWN" for
 * a code this library does not know. Never NULL; do not free. */
KEYTURN_API const char *keyturn_status_name(int status);

/* Frees a string that keyturn allocated and returned through a `char **out`
 * parameter. The memory is overwritten before it is released. */
KEYTURN_API void keyturn_string_free(char *str);

/* ---------------------------------------------------------------------------------
 * Engine
 * ------------------------------------------------------------------------------ */

typedef struct keyturn_engine keyturn_engine;

/* Creates an engine from a JSON configuration of `len` bytes (the text need not be
 * NUL-terminated). The configuration is an object:
 *
 *   {
 *     "engine": {
 *       "threads": 1,            worker threads, 1 to 64
 *       "hook_timeout": 30,      seconds a hook may take before its refresh fails
 *       "drain_timeout": 5,      seconds keyturn_engine_stop() waits for hooks
 *       "http_connections_per_origin": 32
 *                                requests in flight at once to one HTTP endpoint
 *                                from the oauth2 and http_json providers, 1 to 1024;
 *                                more wait their turn within their request timeout
 *     },
 *     "credentials": [ <credential spec>, ... ]
 *   }
 *
 * Durations are numbers of seconds or strings with a unit ("250ms", "30s", "5m",
 * "2h", "1d"). Every key is optional. A credential spec is described at
 * keyturn_credential_add(). Unknown keys and wrong types are rejected, and the
 * message lists every mistake with its JSON path, such as
 * `credentials[2].policy.jitter: expected a number between 0 and 0.5`.
 *
 * The engine does nothing until keyturn_engine_start(). On success *out owns a new
 * engine, to be released with keyturn_engine_free().
 * Fails with KEYTURN_E_INVALID_ARGUMENT (out or config NULL), KEYTURN_E_CONFIG. */
KEYTURN_API int keyturn_engine_new(keyturn_engine **out, const char *config, size_t len);

/* Starts the engine's worker threads and schedules every credential. A credential
 * whose store holds a value that has not expired is not refreshed until its policy
 * says so. Starting a started engine does nothing and succeeds.
 * Fails with KEYTURN_E_NOT_FOUND when a credential names a hook that is not
 * registered (the message names both), KEYTURN_E_NO_MEMORY. */
KEYTURN_API int keyturn_engine_start(keyturn_engine *engine);

/* Stops the engine: no new refresh starts, and the call waits up to `drain_ms`
 * milliseconds (a negative value: the configured drain_timeout) for hooks in flight
 * to complete, then stops and joins the worker threads. Pending events are delivered
 * before it returns. A hook that completes later is still persisted to the
 * credential's store, so new refresh material is not lost, but nothing is
 * scheduled. Stopping a stopped engine does nothing and succeeds; the engine may be
 * started again. Must not be called from a keyturn callback (KEYTURN_E_STATE). */
KEYTURN_API int keyturn_engine_stop(keyturn_engine *engine, int drain_ms);

/* Stops the engine as keyturn_engine_stop(engine, -1) and frees it. Release
 * functions of hooks, subscriptions and the logger are called on this thread.
 * Completions still outstanding fail with KEYTURN_E_STALE_COMPLETION afterwards.
 * Must not be called from a keyturn callback: it then does nothing and sets the
 * last error. Accepts NULL. */
KEYTURN_API void keyturn_engine_free(keyturn_engine *engine);

/* ---------------------------------------------------------------------------------
 * Refresh hooks
 *
 * A hook is your code that produces a new value for a credential. keyturn calls it
 * on one of the engine's worker threads with a request, and the hook answers
 * through the completion it is given — before it returns, or later from any thread.
 * It should return quickly: a hook that talks to a network should hand the work to
 * its own thread and complete from there.
 *
 * The request is a JSON object:
 *
 *   {
 *     "credential": "api",         the credential's id
 *     "reason": "initial" | "scheduled" | "retry" | "manual" | "login",
 *     "attempt": 1,                1 + failures since the last success
 *     "current": null | {          the value now held, if any
 *        "value": "...",           or "value_base64" when it is not UTF-8
 *        "version": 3, "issued_at": 1700000000.0, "expires_at": 1700000060.0
 *     },
 *     "refresh": null | "...",     refresh material (a refresh token), if any; or
 *                                  "refresh_base64" when it is not UTF-8
 *     "metadata": { ... }          the spec's metadata and the last result's
 *   }
 *
 * "reason" is "login" when refresh material was discarded after a hook asked for a
 * new login.
 *
 * An exec provider runs its program once per refresh with this request on standard
 * input, plus "step": "refresh", and reads the result document (below) from its
 * standard output; it must exit 0. Secrets travel only on those two pipes, never in
 * argv or the environment. The program starts in a new process group with a minimal
 * environment (PATH, HOME, LANG, LC_ALL, TZ, TMPDIR when set, plus the spec's "env"),
 * and only descriptors 0, 1 and 2 open. At the hook timeout, or past 1 MiB of output,
 * the whole group is killed. A non-zero exit, a signal, garbage output, too much output
 * and the timeout each fail the refresh with a message naming the program, the step
 * and the cause; each line it writes to standard error is logged at warning level
 * with the values it was given replaced by their fingerprints. The request text contains secrets:
 * it is valid only during the call, and keyturn overwrites it when the hook returns. Copy what you
 * need.
 *
 * The hook answers exactly once, through one of the keyturn_complete* functions.
 * A hook that has not answered within its timeout fails that refresh; its
 * completion then returns KEYTURN_E_STALE_COMPLETION, as does a second answer.
 *
 * The return value of the hook is ignored except KEYTURN_OK versus anything else:
 * a non-zero return without a completion fails the refresh at once with a retry.
 * ------------------------------------------------------------------------------ */

/* A ticket for one outstanding hook request. Plain integers: using one twice, late,
 * or after its engine was freed is safe and fails with KEYTURN_E_STALE_COMPLETION. */
typedef uint64_t keyturn_completion;

typedef int (*keyturn_refresh_hook)(const char *request_json, size_t request_len,
                                    keyturn_completion completion, void *user_data);

/* Called once when keyturn no longer needs a callback's user_data. */
typedef void (*keyturn_release_fn)(void *user_data);

/* Registers `hook` under `name`; credential specs refer to it as
 * {"provider": {"type": "hook", "name": "<name>"}}. `release` (may be NULL) is
 * called with user_data when the engine is freed.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_EXISTS (name taken). On failure
 * `release` is not called: user_data remains the caller's. */
KEYTURN_API int keyturn_hook_register(keyturn_engine *engine, const char *name,
                                      keyturn_refresh_hook hook, void *user_data,
                                      keyturn_release_fn release);

/* Answers a hook request with a JSON result of `len` bytes. A success is
 *
 *   {
 *     "value": "...",               or "value_base64": "..."; required
 *     "expires_in": 3600,           seconds from now; or "expires_at": unix seconds;
 *                                   one of the two is required
 *     "refresh": "...",             or "refresh_base64"; new refresh material;
 *                                   omitted keeps the old one
 *     "renewable": true,            optional, informational
 *     "max_lifetime": 86400,        optional, seconds
 *     "metadata": {"k": "v"}        optional, string values, no secrets
 *   }
 *
 * and a failure is
 *
 *   {"error": "what went wrong", "action": "retry" | "login" | "give_up",
 *    "retry_after": 30}
 *
 * "retry" (the default) retries with backoff, no sooner than retry_after; "login"
 * discards the refresh material and retries with reason "login"; "give_up" stops
 * refreshing until keyturn_credential_refresh() is called. Occurrences of the
 * credential's current value and refresh material in the error text are replaced
 * by their fingerprints (for values of 4 bytes or more: shorter ones would match
 * ordinary words).
 *
 * A success is persisted to the credential's store before this function returns
 * and before the new value is visible to readers: when it returns KEYTURN_OK, new
 * refresh material is on disk. If the store fails, the value is still published in
 * memory (the old refresh material may no longer be valid) and this returns
 * KEYTURN_E_STORE.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_STALE_COMPLETION, KEYTURN_E_CONFIG
 * (malformed result: the refresh then fails and is retried), KEYTURN_E_STORE. */
KEYTURN_API int keyturn_complete(keyturn_completion completion, const char *result_json,
                                 size_t len);

/* Answers a hook request with a value of `len` bytes that expires `expires_in`
 * seconds from now, keeping the refresh material. The same as keyturn_complete()
 * with {"value": ..., "expires_in": ...}, without building JSON. */
KEYTURN_API int keyturn_complete_value(keyturn_completion completion, const void *value, size_t len,
                                       double expires_in);

#define KEYTURN_ACTION_RETRY 0
#define KEYTURN_ACTION_LOGIN 1
#define KEYTURN_ACTION_GIVE_UP 2

/* Answers a hook request with a failure: `action` is one of KEYTURN_ACTION_*,
 * `message` (may be NULL) says why, `retry_after` is seconds (0 for none). */
KEYTURN_API int keyturn_complete_error(keyturn_completion completion, int action,
                                       const char *message, double retry_after);

/* ---------------------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------------------ */

/* Adds a credential from a JSON spec of `len` bytes:
 *
 *   {
 *     "id": "api",                                    required
 *     "provider": {"type": "hook", "name": "issuer"},  required; or a program:
 *                 {"type": "exec", "command": ["/usr/local/bin/get-token", "--prod"],
 *                  "env": {"REGION": "eu"}}
 *                 or the OAuth2 refresh-token grant (RFC 6749 section 6):
 *                 {"type": "oauth2", "token_url": "https://idp.example/token",
 *                  "client_id": "app", "client_secret_file": "/etc/app/secret",
 *                  "client_auth": "basic" | "body", "scope": "read"}
 *                 or a JSON refresh API:
 *                 {"type": "http_json", "url": "https://api.example/refresh",
 *                  "method": "POST", "headers": {"Authorization": "Bearer {{value}}"},
 *                  "body": "{\"refreshToken\": \"{{refresh}}\"}", "body_format": "json",
 *                  "response": {"value": "/authToken", "refresh": "/refreshToken",
 *                               "expires_at": "/validUntil"}}
 *                 Both HTTP providers also take "tls": {"ca_file", "client_cert_file",
 *                 "client_key_file", "insecure_skip_verify"}, "timeouts": {"connect",
 *                 "handshake", "request"}, "max_response_bytes" and "default_lifetime".
 *                 or a Vault token, renewed, with AppRole login when renewal ends:
 *                 {"type": "vault_token", "address": "https://vault.example:8200",
 *                  "token_file": "/etc/app/vault-token",
 *                  "approle": {"role_id_file": "/etc/app/role-id",
 *                              "secret_id_file": "/etc/app/secret-id",
 *                              "mount": "approle"},
 *                  "namespace": "team-a", "increment": "1h"}
 *                 or a leased Vault secret, renewed, read anew when renewal ends:
 *                 {"type": "vault_lease", "address": "https://vault.example:8200",
 *                  "path": "database/creds/readonly",
 *                  "token_file": "/etc/app/vault-token", "increment": "1h"}
 *                 Both Vault providers also take "revoke_on_remove" (false),
 *                 "revoke_superseded_after" (a duration), "tls", "timeouts" and
 *                 "max_response_bytes" as the HTTP providers do.
 *     "seed": {"file": "/etc/app/refresh-token", "format": "refresh_token"
 *                                                       | "token_document"},
 *                                 the first refresh token, or a console's token
 *                                 document (authToken, refreshToken, validUntil),
 *                                 read (mode 0600) when the store holds nothing;
 *              or {"vault_kv": {<the vault_kv store's keys but "type">},
 *                  "format": "refresh_token" | "token_document",
 *                  "field": "refresh_token"}
 *                                 the same from a Vault KV version 2 secret: its
 *                                 fields are the document, or its field `field`
 *                                 holds the refresh token
 *     "store": {"type": "memory"} | {"type": "file", "path": "/var/lib/app/api.json"}
 *              | {"type": "vault_kv", "address": "https://vault.example:8200",
 *                 "mount": "secret", "path": "app/db", "token_file": "/run/app/token",
 *                 "namespace": "team-a", "tls": {...}, "timeouts": {...}},
 *                                 mount defaults to "secret"; namespace is optional;
 *                                 tls and timeouts as the HTTP providers' (request
 *                                 timeout 10 s by default)
 *     "policy": {
 *       "refresh_at": 0.667,      fraction of the lifetime, between 0.05 and 0.95
 *       "lead": 60,               latest refresh before expiry; default the smaller
 *                                 of 60 s and a tenth of the lifetime
 *       "jitter": 0.1,            +/- fraction of the lifetime, 0 to 0.5
 *       "backoff": {"initial": 1, "multiplier": 2, "max": 300, "jitter": 0.2}
 *     },
 *     "hook_timeout": 30,         overrides the engine's
 *     "serve_stale": false,       true: reads return an expired value, flagged
 *     "metadata": {"k": "v"}      strings, passed to the hook; not secret
 *   }
 *
 * OAuth2: a rotated refresh token is persisted before the new access token is
 * published, and the old one is forgotten; an answer without one keeps the old one.
 * invalid_grant is final (the refresh fails with action "give_up" and the message says
 * a new login is needed); 429 and 5xx are retried, honouring Retry-After; other 4xx
 * answers are final. Token endpoints are never followed through a redirect. TLS is
 * verified against the system's CA store (or ca_file) with the host name checked;
 * "insecure_skip_verify" turns that off and logs a warning. Plain http:// is accepted
 * only to a loopback address.
 *
 * vault_token: the value is the token. Without a value yet, the token in "token_file"
 * (mode 0600) is looked up for its TTL; without one, or when Vault refuses it, AppRole
 * logs in (role id and secret id read from their files, mode 0600, at each login).
 * Each refresh renews the token by "increment" (default: the TTL it was issued with).
 * A renewal for less than asked (the max TTL is reached) keeps the token to its end and
 * the next refresh logs in; a refused renewal logs in at once. Without "approle" a
 * token that cannot be renewed further is final (action "give_up").
 * vault_lease: the value is the JSON text of the secret's "data" object, such as
 * {"username":"...","password":"..."}; the lease id is kept as refresh material, so it
 * is persisted before the value is published. Each refresh renews the lease; a lease
 * renewed for less than asked, not renewable, or refused is read anew and the new value
 * published. The token for every request is read from "token_file" each time.
 * Both send X-Vault-Request and, when given, X-Vault-Namespace. Vault's "errors" appear
 * in failure messages; 400, 401 and 403 are final, 429, 5xx, timeouts and resets are
 * retried, honouring Retry-After. "revoke_on_remove" revokes the lease (or the token)
 * when the credential is removed or the engine stops (within its drain timeout);
 * "revoke_superseded_after" revokes a lease (or token) replaced by a new read (or
 * login) once that grace period has passed.
 *
 * A file store keeps the value in a JSON file written atomically (temporary file,
 * fsync, rename, fsync of the directory) with mode 0600, and loads it when the
 * credential is added. On a running engine the credential is scheduled at once.
 *
 * A vault_kv store keeps the value as the fields of one secret in a Vault KV version 2
 * mount, at <mount>/data/<path>, in the file store's format. Adding the credential
 * reads it (nothing there means nothing stored) and remembers its version; every
 * persist writes with check-and-set on that version and remembers the new one. When
 * another writer has changed the secret in between, Vault refuses the write: the
 * value is published in memory all the same, the "refreshed" event says
 * "persisted": false with an error naming the store, and the secret is never
 * overwritten; later persists are refused the same way until the credential is added
 * again. Each call is synchronous on the calling thread, bounded by the request
 * timeout. The token is read from token_file (mode 0600) at every call; it is sent in
 * X-Vault-Token (with X-Vault-Namespace when given, and X-Vault-Request: true) and
 * appears in no message. Plain http:// is accepted only to a loopback address.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_CONFIG, KEYTURN_E_EXISTS,
 * KEYTURN_E_NOT_FOUND (running engine, hook not registered), KEYTURN_E_STORE (the
 * stored file or KV secret cannot be read or parsed; it is left untouched). */
KEYTURN_API int keyturn_credential_add(keyturn_engine *engine, const char *spec, size_t len);

/* Removes a credential. A hook in flight for it completes into nothing; the stored
 * file is kept. Open handles see KEYTURN_E_REMOVED. Emits a "removed" event.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND. */
KEYTURN_API int keyturn_credential_remove(keyturn_engine *engine, const char *id);

/* Refreshes a credential now, unless a refresh is already in flight (then it does
 * nothing and succeeds). Also restarts a credential that gave up.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND, KEYTURN_E_STATE (the
 * engine is not started). */
KEYTURN_API int keyturn_credential_refresh(keyturn_engine *engine, const char *id);

/* Writes a JSON object describing a credential to *out (free it with
 * keyturn_string_free): id, state, hook, store, version, fingerprint, issued_at,
 * expires_at, has_refresh, next_refresh_at, attempt, last_error, serve_stale.
 * Never the value. The state is the first that applies of: "failed" (gave up;
 * no refresh until keyturn_credential_refresh), "expired", "refreshing",
 * "expiring", "fresh", "pending" (no value yet).
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND. */
KEYTURN_API int keyturn_credential_status(char **out, keyturn_engine *engine, const char *id);

/* Writes a JSON array of every credential's status to *out, ordered by id. */
KEYTURN_API int keyturn_engine_status(char **out, keyturn_engine *engine);

/* Set in *out_flags by the read functions when the value returned has expired and
 * the credential serves stale values. */
#define KEYTURN_READ_STALE 1u

/* Copies the current value of credential `id` into `buf` (capacity `cap`) and
 * writes its length to *out_len. When `cap` is too small, nothing is copied,
 * *out_len receives the needed size, and KEYTURN_E_BUFFER_TOO_SMALL is returned
 * (call with cap 0 to ask for the size). `out_flags` may be NULL.
 * An expired value is never returned (KEYTURN_E_EXPIRED) unless the credential has
 * "serve_stale": then it is returned with KEYTURN_READ_STALE set.
 * This looks the id up under a lock; for many reads, open a handle.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND, KEYTURN_E_NOT_READY,
 * KEYTURN_E_EXPIRED, KEYTURN_E_BUFFER_TOO_SMALL. */
KEYTURN_API int keyturn_read(keyturn_engine *engine, const char *id, void *buf, size_t cap,
                             size_t *out_len, unsigned *out_flags);

/* A handle to one credential, for reading its value on a hot path. */
typedef struct keyturn_credential keyturn_credential;

/* Opens a handle to credential `id`. The handle stays valid after the credential is
 * removed and after the engine is freed (reads then fail with KEYTURN_E_REMOVED);
 * close it with keyturn_credential_close().
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND, KEYTURN_E_NO_MEMORY. */
KEYTURN_API int keyturn_credential_open(keyturn_credential **out, keyturn_engine *engine,
                                        const char *id);

/* As keyturn_read(), through a handle: no lock, no allocation, no JSON. Readers never
 * wait for a refresh, and any number of threads may read one handle at once. */
KEYTURN_API int keyturn_credential_read(const keyturn_credential *cred, void *buf, size_t cap,
                                        size_t *out_len, unsigned *out_flags);

/* Closes a handle. Accepts NULL. */
KEYTURN_API void keyturn_credential_close(keyturn_credential *cred);

/* ---------------------------------------------------------------------------------
 * Secrets and their rotation
 *
 * A secret is a value that keyturn replaces on a schedule, through four steps that
 * you write: create a new value, set it in the target system, test that it works,
 * finish. The secret's versions carry staging labels: CURRENT (exactly one, once
 * the secret has a value), PENDING (only while a rotation is in flight) and
 * PREVIOUS (the value that was CURRENT before the last rotation).
 *
 * A rotation gets a version id when it starts, such as "20261203T182301Z-3f9a1c",
 * and keeps it through every step. Each transition (started, created, set, tested,
 * finished, failed, abandoned) is written to the secret's store atomically BEFORE
 * the next step's hook runs, so a process killed at any instant resumes, when it
 * starts again, at the first step not yet recorded.
 *
 * The step contract, which makes that safe:
 *   - Any step may run again for the same version id: after a crash between the
 *     hook's work and the journal write, or after a failure. Each step must detect
 *     that its work is already done and then succeed without doing it twice.
 *   - create is never asked twice once its value is journaled: PENDING is kept and
 *     reused. If a crash came before that, create runs again with the same version
 *     id (tag anything you create outside with it, so you can find it again).
 *   - set applies PENDING in the target system; test proves PENDING works there; a
 *     failed test leaves CURRENT untouched. finish does what is left (often
 *     nothing); keyturn then makes PENDING the CURRENT value and CURRENT the
 *     PREVIOUS one.
 *   - After finish, the version is CURRENT and no step runs for it again.
 *   - A rotation that fails `retry.max_attempts` times (default 5) is abandoned and
 *     a new one starts with a new version id and a new value, after the backoff.
 *     The abandoned value is kept (in "abandoned") until a rotation finishes: a set
 *     step may have applied it before a later step failed.
 *   - At most one rotation per secret runs at a time; asking for one during another
 *     joins it.
 *
 * Step hooks are registered with keyturn_hook_register(), like refresh hooks, and
 * answer through the same keyturn_complete* functions. A secret names one hook for
 * every step ("hook") or one per step ("hooks"); an exec hook is a program that
 * reads the request on standard input and writes the result on standard output.
 * The request is a JSON object:
 *
 *   {
 *     "secret": "db-app",
 *     "step": "create" | "set" | "test" | "finish",
 *     "version": "20261203T182301Z-3f9a1c",    the rotation's version id
 *     "attempt": 1,                             1 + failures of this rotation
 *     "current":  null | {"version": "...", "value": "..."},
 *     "previous": null | {"version": "...", "value": "..."},
 *     "pending":  null | {"version": "...", "value": "..."},
 *     "abandoned": [{"version": "...", "value": "..."}, ...],  newest first
 *     "metadata": { ... }                       the spec's metadata
 *   }
 *
 * A value that is not UTF-8 comes as "value_base64" instead of "value". "current"
 * is null only for a secret that has never had a value (its first rotation).
 * The result is {"value": "..."} (or "value_base64") for create and {} for the
 * other steps; a failure is {"error": "why", "retry_after": 30}. With
 * keyturn_complete_value() a create hook passes its value directly (expires_in is
 * ignored), and keyturn_complete_error() reports a failure (action is ignored).
 * A step hook that does not answer within its timeout fails that attempt.
 * ------------------------------------------------------------------------------ */

/* Adds a secret from a JSON spec of `len` bytes:
 *
 *   {
 *     "id": "db-app",                                  required
 *     "hook": {"type": "hook", "name": "pg"},          or an exec hook:
 *             {"type": "exec", "command": ["/usr/bin/rotate-db", "--verbose"],
 *              "env": {"PGCONNECT_TIMEOUT": "5"}},     never secrets in either
 *     "hooks": {"create": {...}, "set": {...}, "test": {...}, "finish": {...}},
 *                                                      per step; "hook" is the default
 *     "store": {"type": "file", "path": "/var/lib/keyturn/db-app.json"},
 *                                or {"type": "memory"}, or {"type": "vault_kv", ...} as
 *                                for credentials: the journal is then written to KV
 *                                with check-and-set
 *     "schedule": {"every": "30d", "jitter": "1h"}
 *               | {"cron": "0 3 * * SUN", "window": "2h", "jitter": "15m"},
 *     "retry": {"backoff": {"initial": 5, "multiplier": 2, "max": 1800},
 *               "max_attempts": 5},
 *     "keep_versions": 1,        past versions kept besides CURRENT (1: PREVIOUS)
 *     "hook_timeout": 30,        overrides the engine's
 *     "seed_file": "/run/keyturn/db-app.initial",
 *                                the first CURRENT value, read (mode 0600 required)
 *                                when the store holds none; one trailing newline
 *                                is dropped
 *     "metadata": {"role": "app"}
 *   }
 *
 * Without a schedule a secret rotates only when asked. A secret with no value at
 * all (no store, no seed) rotates at once when the engine starts; its first set
 * step receives "current": null. Cron schedules are in UTC; a rotation that cannot
 * start inside its window waits for the next fire time. Durations are seconds or
 * strings with a unit: "90s", "15m", "12h", "30d".
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_CONFIG, KEYTURN_E_EXISTS,
 * KEYTURN_E_NOT_FOUND (running engine, hook not registered; or no seed file),
 * KEYTURN_E_STORE (the store cannot be read; it is left untouched). */
KEYTURN_API int keyturn_secret_add(keyturn_engine *engine, const char *spec, size_t len);

/* Forgets a secret; its store is kept. A step in flight completes into nothing and
 * resumes from the journal when the secret is added again.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND. */
KEYTURN_API int keyturn_secret_remove(keyturn_engine *engine, const char *id);

/* Starts a rotation now, or joins the one in flight, and writes its version id to
 * *out_version (free with keyturn_string_free; `out_version` may be NULL). The start
 * is journaled before this returns.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND, KEYTURN_E_STATE (the
 * engine is not started), KEYTURN_E_STORE (the journal cannot be written). */
KEYTURN_API int keyturn_secret_rotate(char **out_version, keyturn_engine *engine, const char *id);

/* Gives a secret that has no value its first CURRENT value (`len` bytes, 1 to
 * 1 MiB), persisted before this returns.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND, KEYTURN_E_STATE (it
 * has a value, or a rotation is in flight), KEYTURN_E_STORE. */
KEYTURN_API int keyturn_secret_seed(keyturn_engine *engine, const char *id, const void *value,
                                    size_t len);

/* Copies the value labelled `label` ("CURRENT", "PREVIOUS" or "PENDING"; NULL means
 * CURRENT) into `buf`, as keyturn_read() does: *out_len receives the size, also
 * when `cap` is too small (KEYTURN_E_BUFFER_TOO_SMALL). This takes a lock and copies
 * the value once; it is not a hot path.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND, KEYTURN_E_NOT_READY (no
 * version has that label), KEYTURN_E_BUFFER_TOO_SMALL. */
KEYTURN_API int keyturn_secret_read(keyturn_engine *engine, const char *id, const char *label,
                                    void *buf, size_t cap, size_t *out_len);

/* Writes a JSON description of secret `id` (or, with `id` NULL, an array of every
 * secret ordered by id) to *out; free it with keyturn_string_free. Fields: id,
 * state ("idle", "rotating", "failing", "no_value"), store, current, previous,
 * pending (each null or {version, fingerprint, created_at}), rotation (null or
 * {version, stage, next_step, reason, round, failures, started_at}), in_flight
 * (the step running, or null), next_at, last_rotated, rotations, last_error and
 * the last journal entries. Never a value.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND. */
KEYTURN_API int keyturn_secret_status(char **out, keyturn_engine *engine, const char *id);

/* ---------------------------------------------------------------------------------
 * Events and logs
 *
 * Events are JSON objects with "type", "credential" (or "secret", for the events
 * of secrets), "time" (unix seconds) and fields by type:
 *   "refreshed"       version, fingerprint, expires_at, next_refresh_at, persisted
 *   "refresh_failed"  error, attempt, action, retry_at (null when giving up)
 *   "expiring"        expires_at: inside the lead time and the last attempt failed
 *   "expired"         expires_at: no valid value remains
 *   "removed"         a credential or a secret was removed
 *   "rotation_started"   version, reason ("initial", "scheduled", "manual",
 *                        "restart")
 *   "rotation_step"      version, step: that step succeeded and is journaled
 *   "rotated"            version, fingerprint, next_rotation_at: it is CURRENT now
 *   "rotation_failed"    version, step, error, attempt, retry_at
 *   "rotation_abandoned" version, step, error, attempt, retry_at (when a new
 *                        version id starts)
 * Events carry no secret values; "fingerprint" tells versions apart.
 * ------------------------------------------------------------------------------ */

/* Receives one event. Called on an engine worker thread, one event at a time, in
 * the order the events happened. `json` is valid only during the call. It must not
 * call keyturn_engine_stop() or keyturn_engine_free(); other keyturn calls are
 * allowed. */
typedef void (*keyturn_event_fn)(const char *json, size_t len, void *user_data);

/* Subscribes `fn` to every event; writes the subscription id to *out_id. `release`
 * (may be NULL) is called after unsubscribing or when the engine is freed.
 * Fails with KEYTURN_E_INVALID_ARGUMENT; on failure `release` is not called. */
KEYTURN_API int keyturn_subscribe(uint64_t *out_id, keyturn_engine *engine, keyturn_event_fn fn,
                                  void *user_data, keyturn_release_fn release);

/* Ends a subscription. After it returns, `fn` is not called again unless the call
 * is made from inside that very callback, which then finishes.
 * Fails with KEYTURN_E_INVALID_ARGUMENT, KEYTURN_E_NOT_FOUND. */
KEYTURN_API int keyturn_unsubscribe(keyturn_engine *engine, uint64_t id);

#define KEYTURN_LOG_DEBUG 10
#define KEYTURN_LOG_INFO 20
#define KEYTURN_LOG_WARNING 30
#define KEYTURN_LOG_ERROR 40

/* Receives one log line: credential id, step and outcome, never a secret. Called on
 * an engine worker thread, in order, like events; same restrictions. */
typedef void (*keyturn_log_fn)(int level, const char *message, void *user_data);

/* Sends log lines at `min_level` and above to `fn`, replacing any earlier logger
 * (whose release function is then called). `fn` NULL turns logging off, and then
 * `release` (if given) is called with `user_data` before this returns. Without a
 * logger, keyturn logs nothing. Fails with KEYTURN_E_INVALID_ARGUMENT. */
KEYTURN_API int keyturn_set_logger(keyturn_engine *engine, int min_level, keyturn_log_fn fn,
                                   void *user_data, keyturn_release_fn release);

#ifdef __cplusplus
}
#endif

#endif /* KEYTURN_H */
