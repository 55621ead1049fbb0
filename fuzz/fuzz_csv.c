/* libFuzzer target: CSV from memory, with and without a header line. */
#include <stdint.h>
#include <stdlib.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int header = 0; header <= 1; header++) {
        nb_tensor *t = NULL;
        char **names = NULL;
        nb_status s = nb_csv_parse(data, size, header, &t, &names);
        if ((s == NB_OK) != (t != NULL)) abort();
        if (s == NB_OK && t->rank != 2) abort();
        if (names && (!header || s != NB_OK)) abort();
        if (t) nb_csv_free_names(names, t->shape[1]);
        nb_tensor_free(t);
    }
    return 0;
}
