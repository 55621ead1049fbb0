/* libFuzzer target: IDX (raw and gzip) from memory. */
#include <stdint.h>
#include <stdlib.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_tensor *t = NULL;
    nb_status s = nb_idx_parse(data, size, &t);
    if ((s == NB_OK) != (t != NULL)) abort(); /* a result exactly when OK */
    nb_tensor_free(t);
    return 0;
}
