/* libFuzzer target: safetensors from memory. What parses must also
 * serialise, and the serialised file must parse again to the same tensors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_safetensors *st = NULL;
    nb_status s = nb_safetensors_parse(data, size, &st);
    if ((s == NB_OK) != (st != NULL)) abort();
    if (s == NB_OK) {
        void *buf = NULL;
        size_t len = 0;
        if (nb_safetensors_serialize(st, sizeof(nb_real) == 8, &buf, &len) != NB_OK) abort();
        nb_safetensors *back = NULL;
        if (nb_safetensors_parse(buf, len, &back) != NB_OK) abort();
        if (nb_safetensors_count(back) != nb_safetensors_count(st)) abort();
        for (int i = 0; i < nb_safetensors_count(st); i++) {
            const char *name = nb_safetensors_name(st, i);
            const nb_tensor *a = nb_safetensors_get(st, name), *b = nb_safetensors_get(back, name);
            if (!b || a->size != b->size || a->rank != b->rank) abort();
            /* Bitwise equal (NaN payloads included) since nb_real is written. */
            if (a->size && memcmp(a->data, b->data, (size_t)a->size * sizeof(nb_real)) != 0) abort();
        }
        nb_safetensors_free(back);
        free(buf);
    }
    nb_safetensors_free(st);
    return 0;
}
