/* libFuzzer target: the model spec grammar (nb_spec_parse; every layer must
 * print as a line that parses back to it) and the names' parsers
 * (nb_activation_parse, ...: a name that parses prints as itself), then,
 * for specs that parse and stay small, nb_model_from_spec on the input
 * shape 28,28,1 and one forward pass of a batch of one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Work caps: the fuzzer must not spend its time (or memory) on huge models. */
#define MAX_PARAMS 1000000.0
#define MAX_VALUES 1000000.0

/* An upper bound on the parameters and on the largest activation of the
 * model the layers would build on a 28x28x1 input. Spatial sizes never grow
 * (stride >= 1, 'same' padding keeps them), so H*W <= 784 throughout. */
static int small_enough(const nb_layer_spec *l, int n)
{
    double hw = 28.0 * 28.0, c = 1, params = 0, cmax = 1;
    for (int i = 0; i < n; i++) {
        switch (l[i].kind) {
        case NB_LAYER_CONV2D:
            /* the im2col buffer: one column of size*size*c per output pixel */
            if (hw * l[i].size * l[i].size * c > 4 * MAX_VALUES) return 0;
            params += (double)l[i].size * l[i].size * c * l[i].units + l[i].units;
            c = l[i].units;
            break;
        case NB_LAYER_DENSE: /* on the flattened input at most */
            params += hw * c * l[i].units + l[i].units;
            c = l[i].units;
            break;
        case NB_LAYER_FLATTEN:
            c *= hw;
            hw = 1;
            break;
        /* Graph entries: cmax, the most values any output so far holds per
         * example, bounds the channels of a named one (over <= 28x28). */
        case NB_LAYER_FROM:
            c = cmax;
            hw = 28.0 * 28.0;
            break;
        case NB_LAYER_CONCAT: c += l[i].nrefs * cmax; break;
        default: break;
        }
        if (c * hw > cmax) cmax = c * hw;
        if (params > MAX_PARAMS || hw * c > MAX_VALUES) return 0;
    }
    return 1;
}

/* The names' parsers on the whole input: one that parses names a value
 * whose name parses back to it; a refusal leaves a message. */
#define CHECK_NAME(prefix, type)                                                                                       \
    do {                                                                                                               \
        type v, w;                                                                                                     \
        if (nb_##prefix##_parse(text, &v) == NB_OK) {                                                                  \
            if (nb_##prefix##_parse(nb_##prefix##_name(v), &w) != NB_OK || w != v) abort();                            \
        } else if (!nb_last_error()[0]) {                                                                              \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void check_names(const char *text)
{
    CHECK_NAME(activation, nb_activation);
    CHECK_NAME(loss, nb_loss_kind);
    CHECK_NAME(optimizer, nb_optimizer);
    CHECK_NAME(schedule, nb_schedule);
    CHECK_NAME(jac_mode, nb_jac_mode);
    CHECK_NAME(init, nb_init);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    if (!spec) return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';
    check_names(spec);
    nb_layer_spec *layers = NULL;
    int n = -1;
    nb_status s = nb_spec_parse(spec, &layers, &n);
    if (s != NB_OK) {
        if (layers || n != 0 || !nb_last_error()[0]) abort();
        free(spec);
        return 0;
    }
    if (!layers || n < 1) abort();
    for (int i = 0; i < n; i++) { /* every layer prints as a line that parses back to it */
        char buf[128], again[128];
        nb_layer_spec_str(&layers[i], buf, sizeof buf);
        if (!buf[0]) abort();
        nb_layer_spec *l2 = NULL;
        int n2 = 0;
        if (nb_spec_parse(buf, &l2, &n2) != NB_OK || n2 != 1) abort();
        nb_layer_spec_str(l2, again, sizeof again);
        if (strcmp(buf, again) || l2->kind != layers[i].kind || l2->act != layers[i].act ||
            memcmp(&l2->rate, &layers[i].rate, sizeof l2->rate) ||
            memcmp(&l2->momentum, &layers[i].momentum, sizeof l2->momentum) ||
            memcmp(&l2->eps, &layers[i].eps, sizeof l2->eps))
            abort();
        free(l2);
    }
    if (small_enough(layers, n)) {
        const int64_t in[3] = {28, 28, 1};
        nb_model *m = NULL;
        s = nb_model_from_spec(spec, 3, in, &m);
        if ((s == NB_OK) != (m != NULL)) abort();
        if (m) {
            if (nb_model_num_layers(m) != n || nb_model_num_params(m) < 0) abort();
            if (nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1) != NB_OK) abort();
            const int64_t xs[4] = {1, 28, 28, 1};
            nb_tensor *x = nb_tensor_new(4, xs), *y = NULL;
            if (x && nb_model_predict(m, x, 1, &y) == NB_OK && !y) abort();
            nb_tensor_free(y);
            nb_tensor_free(x);
        }
        nb_model_free(m);
    }
    free(layers);
    free(spec);
    return 0;
}
