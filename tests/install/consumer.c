#include <keyturn.h>
#include <stdio.h>

int main(void) {
    keyturn_engine *engine = NULL;
    int status = keyturn_engine_new(&engine, "{}", 2);
    printf("keyturn %s: engine_new -> %s\n", keyturn_version_string(), keyturn_status_name(status));
    keyturn_engine_free(engine);
    return status == KEYTURN_OK && keyturn_abi_version() == KEYTURN_ABI_VERSION ? 0 : 1;
}
