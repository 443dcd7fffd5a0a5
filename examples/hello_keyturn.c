/*
 * hello_keyturn: the smallest C program that keeps a token fresh with keyturn.
 *
 * It registers a refresh hook that mints a token valid for two seconds, starts an
 * engine, reads the token through a handle (the hot path: no lock, no allocation)
 * for about six seconds, and prints every event. Tokens are never printed; events
 * show a fingerprint instead.
 *
 * Build and run (from a build tree): ./hello_keyturn
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keyturn.h"

static int minted = 0;

/* Runs on an engine worker thread. It answers at once; a hook that talks to a
 * network would hand the request to its own thread and complete from there. */
static int mint_token(const char *request, size_t len, keyturn_completion completion,
                      void *user_data) {
    char token[64];
    (void)request;
    (void)len;
    (void)user_data;
    minted++;
    snprintf(token, sizeof token, "hello-token-%d-%ld", minted, (long)time(NULL));
    return keyturn_complete_value(completion, token, strlen(token), 2.0);
}

static void print_event(const char *json, size_t len, void *user_data) {
    (void)user_data;
    printf("event: %.*s\n", (int)len, json);
}

static void print_log(int level, const char *message, void *user_data) {
    (void)user_data;
    printf("log[%d]: %s\n", level, message);
}

static int fail(const char *what, int status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, keyturn_status_name(status), keyturn_last_error());
    return 1;
}

int main(void) {
    static const char config[] =
        "{\"engine\": {\"threads\": 1},"
        " \"credentials\": [{\"id\": \"hello\", \"provider\": {\"type\": \"hook\", \"name\": "
        "\"mint\"},"
        "                    \"policy\": {\"jitter\": 0.05}}]}";
    keyturn_engine *engine = NULL;
    keyturn_credential *handle = NULL;
    uint64_t subscription = 0;
    int status, reads = 0, expired = 0, i;

    printf("keyturn %s (ABI %d)\n", keyturn_version_string(), keyturn_abi_version());
    if ((status = keyturn_engine_new(&engine, config, sizeof config - 1)) != KEYTURN_OK)
        return fail("keyturn_engine_new", status);
    keyturn_set_logger(engine, KEYTURN_LOG_INFO, print_log, NULL, NULL);
    keyturn_subscribe(&subscription, engine, print_event, NULL, NULL);
    if ((status = keyturn_hook_register(engine, "mint", mint_token, NULL, NULL)) != KEYTURN_OK)
        return fail("keyturn_hook_register", status);
    if ((status = keyturn_engine_start(engine)) != KEYTURN_OK)
        return fail("keyturn_engine_start", status);
    if ((status = keyturn_credential_open(&handle, engine, "hello")) != KEYTURN_OK)
        return fail("keyturn_credential_open", status);

    for (i = 0; i < 600; i++) {
        char value[128];
        size_t len = 0;
        struct timespec pause = {0, 10 * 1000 * 1000};
        status = keyturn_credential_read(handle, value, sizeof value, &len, NULL);
        if (status == KEYTURN_OK) {
            reads++;
        } else if (status == KEYTURN_E_EXPIRED) {
            expired++;
        } else if (status != KEYTURN_E_NOT_READY) {
            return fail("keyturn_credential_read", status);
        }
        nanosleep(&pause, NULL);
    }

    keyturn_credential_close(handle);
    keyturn_engine_free(engine);
    printf("tokens minted: %d, successful reads: %d, expired reads: %d\n", minted, reads, expired);
    return (minted >= 3 && reads > 0 && expired == 0) ? 0 : 1;
}
