/* libFuzzer target: NumPy .npy from memory. */
#include <stdint.h>
#include <stdlib.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_tensor *t = NULL;
    nb_status s = nb_npy_parse(data, size, &t);
    if ((s == NB_OK) != (t != NULL)) abort();
    nb_tensor_free(t);
    return 0;
}
