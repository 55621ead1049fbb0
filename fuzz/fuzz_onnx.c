/* libFuzzer target: ONNX models from memory (nb_onnx_parse: the protobuf
 * reader, the ONNX messages and the import of graphs into nabla models).
 * Whatever imports must export again and import back to the same spec and
 * the same weights, bit for bit, and small ones run a forward pass. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_model(nb_model *a, nb_model *b)
{
    if (strcmp(nb_model_spec(a), nb_model_spec(b)) || nb_model_param_count(a) != nb_model_param_count(b)) abort();
    for (int i = 0; i < nb_model_param_count(a); i++) {
        const nb_tensor *x = nb_value(nb_model_param(a, i)), *y = nb_value(nb_model_param(b, i));
        if (x->size != y->size || memcmp(x->data, y->data, sizeof(nb_real) * (size_t)x->size)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_model *m = NULL;
    /* The first byte picks the flags, so that NaN weights get through too. */
    const unsigned flags = size && (data[0] & 1) ? NB_LOAD_ALLOW_NONFINITE : 0;
    nb_status s = nb_onnx_parse(data, size, flags, &m);
    if ((s == NB_OK) != (m != NULL)) abort();
    if (s) return 0;
    for (unsigned layout = 0; layout <= NB_ONNX_NCHW; layout++) {
        void *buf = NULL;
        size_t len = 0;
        nb_model *back = NULL;
        if (nb_onnx_serialize(m, layout, &buf, &len) != NB_OK) abort(); /* every imported model exports */
        if (nb_onnx_parse(buf, len, NB_LOAD_ALLOW_NONFINITE, &back) != NB_OK) abort();
        same_model(m, back);
        nb_model_free(back);
        free(buf);
    }
    int64_t shape[8] = {1}, elems = 1;
    const int r = nb_model_input_shape(m, shape + 1);
    for (int d = 1; d <= r; d++) elems *= shape[d];
    if (elems <= 4096 && nb_model_num_params(m) <= 65536) { /* small enough to run in the time limit */
        nb_tensor *x = nb_tensor_new(r + 1, shape), *y = NULL;
        if (x) {
            for (int64_t i = 0; i < x->size; i++) x->data[i] = (nb_real)((i % 7) - 3) / 4;
            (void)nb_model_predict(m, x, 1, &y); /* may refuse (memory); must not crash */
        }
        nb_tensor_free(x);
        nb_tensor_free(y);
    }
    nb_model_free(m);
    return 0;
}
