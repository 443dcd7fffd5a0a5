/* Compiled as C99 with -Wall -Wextra -pedantic -Werror: the header must be usable
 * from plain C, and every declaration must link. */
#include "keyturn.h"

#include <stdio.h>

int main(void) {
    keyturn_engine *engine = NULL;
    keyturn_credential *cred = NULL;
    keyturn_completion completion = 0;
    if (keyturn_version_number() != KEYTURN_VERSION_NUMBER) return 1;
    if (keyturn_abi_version() != KEYTURN_ABI_VERSION) return 1;
    keyturn_engine_free(engine);
    keyturn_credential_close(cred);
    keyturn_string_free(NULL);
    if (keyturn_complete_value(completion, "x", 1, 1.0) != KEYTURN_E_STALE_COMPLETION) return 1;
    printf("keyturn %s\n", keyturn_version_string());
    return 0;
}
