/* The model spec grammar (DESIGN.md): one layer per line or ';', '#' starts
 * a comment. Every number is range-checked so that a hostile spec cannot ask
 * for absurd allocations.
 *   conv2d FILTERS SIZE [ACT] [stride=S] [padding=valid|same] [dilation=D]
 *   maxpool SIZE [stride=S] [padding=..]    avgpool SIZE [stride=S] [padding=..]
 *   flatten | dense UNITS [ACT] | neuron [ACT] | dropout RATE | ACT */
#include "nn_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { MAX_UNITS = 1 << 20, MAX_SIZE = 1024, MAX_LAYERS = 1024, MAX_TOKENS = 16, MAX_LINE = 512 };

static const char *act_names[] = {"none", "relu", "sigmoid", "tanh", "softmax", "log_softmax",
                                  "leaky_relu", "elu", "softplus", "gelu"};

const char *nb_activation_name(nb_activation a)
{
    return (unsigned)a < sizeof act_names / sizeof act_names[0] ? act_names[a] : "?";
}

static int parse_act(const char *t, nb_activation *a)
{
    for (int i = 1; i < (int)(sizeof act_names / sizeof act_names[0]); i++)
        if (!strcmp(t, act_names[i])) return *a = (nb_activation)i, 1;
    /* "none": what nabla wrote for a bare linear layer before it wrote "linear" */
    if (!strcmp(t, "linear") || !strcmp(t, "none")) return *a = NB_ACT_NONE, 1;
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int parse_int(const char *t, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(t, &end, 10);
    if (errno || end == t || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* Parses "key=value" options; returns 0 on an unknown or bad one. */
static int parse_option(const char *t, nb_layer_spec *l, char *why, size_t n)
{
    const char *eq = strchr(t, '=');
    if (!eq) return snprintf(why, n, "unexpected '%s'", t), 0;
    size_t klen = (size_t)(eq - t);
    const char *v = eq + 1;
    if (klen == 6 && !strncmp(t, "stride", 6)) {
        if (!parse_int(v, 1, MAX_SIZE, &l->stride)) return snprintf(why, n, "stride must be 1..%d", MAX_SIZE), 0;
    } else if (klen == 8 && !strncmp(t, "dilation", 8) && l->kind == NB_LAYER_CONV2D) {
        if (!parse_int(v, 1, MAX_SIZE, &l->dilation))
            return snprintf(why, n, "dilation must be 1..%d", MAX_SIZE), 0;
    } else if (klen == 7 && !strncmp(t, "padding", 7)) {
        if (!strcmp(v, "valid")) l->padding = NB_PAD_VALID;
        else if (!strcmp(v, "same")) l->padding = NB_PAD_SAME;
        else return snprintf(why, n, "padding must be 'valid' or 'same', not '%s'", v), 0;
    } else {
        return snprintf(why, n, "unknown option '%.*s'", (int)klen, t), 0;
    }
    return 1;
}

/* One layer from its tokens; why gets the reason on failure. */
static int parse_layer(char **tok, int ntok, nb_layer_spec *l, char *why, size_t n)
{
    memset(l, 0, sizeof *l);
    const char *kw = tok[0];
    int i = 1;
    if (!strcmp(kw, "conv2d")) {
        l->kind = NB_LAYER_CONV2D;
        if (ntok < 3 || !parse_int(tok[1], 1, MAX_UNITS, &l->units))
            return snprintf(why, n, "usage: conv2d FILTERS SIZE [ACT] [stride=S] [padding=valid|same] [dilation=D]"), 0;
        int s2;
        char *x = strchr(tok[2], 'x');
        if (x) { /* "3x3": square kernels only */
            *x = '\0';
            if (!parse_int(tok[2], 1, MAX_SIZE, &l->size) || !parse_int(x + 1, 1, MAX_SIZE, &s2) || s2 != l->size)
                return snprintf(why, n, "kernel SIZE must be one number (square kernels), e.g. 3"), 0;
        } else if (!parse_int(tok[2], 1, MAX_SIZE, &l->size))
            return snprintf(why, n, "kernel SIZE must be 1..%d", MAX_SIZE), 0;
        i = 3;
        if (i < ntok && parse_act(tok[i], &l->act)) i++;
    } else if (!strcmp(kw, "maxpool") || !strcmp(kw, "avgpool") || !strcmp(kw, "maxpool2d") ||
               !strcmp(kw, "avgpool2d")) {
        l->kind = kw[0] == 'm' ? NB_LAYER_MAXPOOL : NB_LAYER_AVGPOOL;
        if (ntok < 2 || !parse_int(tok[1], 1, MAX_SIZE, &l->size))
            return snprintf(why, n, "usage: %s SIZE [stride=S] [padding=valid|same]", kw), 0;
        i = 2;
    } else if (!strcmp(kw, "flatten")) {
        l->kind = NB_LAYER_FLATTEN;
    } else if (!strcmp(kw, "dense") || !strcmp(kw, "neuron")) {
        l->kind = NB_LAYER_DENSE;
        l->units = 1;
        if (kw[0] == 'd' && (ntok < 2 || !parse_int(tok[i++], 1, MAX_UNITS, &l->units)))
            return snprintf(why, n, "usage: dense UNITS [ACT], UNITS in 1..%d", MAX_UNITS), 0;
        if (i < ntok && parse_act(tok[i], &l->act)) i++;
    } else if (!strcmp(kw, "dropout")) {
        l->kind = NB_LAYER_DROPOUT;
        char *end;
        l->rate = ntok >= 2 ? strtod(tok[1], &end) : -1;
        if (ntok < 2 || *end || !(l->rate >= 0 && l->rate < 1))
            return snprintf(why, n, "usage: dropout RATE, RATE in [0, 1)"), 0;
        i = 2;
    } else if (parse_act(kw, &l->act)) {
        l->kind = NB_LAYER_ACTIVATION;
    } else {
        return snprintf(why, n,
                        "unknown layer '%s' (expected conv2d, maxpool, avgpool, flatten, dense, neuron, dropout or "
                        "an activation: relu sigmoid tanh softmax log_softmax leaky_relu elu softplus gelu linear)",
                        kw),
               0;
    }
    for (; i < ntok; i++) {
        if (l->kind == NB_LAYER_CONV2D || l->kind == NB_LAYER_MAXPOOL || l->kind == NB_LAYER_AVGPOOL) {
            if (!parse_option(tok[i], l, why, n)) return 0;
        } else {
            return snprintf(why, n, "unexpected '%s'", tok[i]), 0;
        }
    }
    return 1;
}

nb_status nb_spec_parse(const char *spec, nb_layer_spec **layers, int *nlayers)
{
    if (!spec || !layers || !nlayers) return nb_fail(NB_ERR_ARG, "spec: NULL argument");
    *layers = NULL;
    *nlayers = 0;
    nb_layer_spec *out = NULL;
    int n = 0, cap = 0, line = 1;
    const char *p = spec;
    while (*p) {
        /* One entry: up to ';' or newline; a comment runs to the newline. */
        char buf[MAX_LINE];
        size_t len = 0;
        int too_long = 0;
        int entry_line = line;
        while (*p && *p != ';' && *p != '\n' && *p != '#') {
            if (len + 1 < sizeof buf) buf[len++] = *p;
            else too_long = 1;
            p++;
        }
        if (*p == '#')
            while (*p && *p != '\n') p++;
        if (*p == '\n') line++;
        if (*p) p++;
        buf[len] = '\0';
        char *tok[MAX_TOKENS];
        int ntok = 0;
        /* Split on blanks in place (not strtok: its hidden state is shared
         * between threads). */
        for (char *t = buf;;) {
            while (*t && is_blank(*t)) t++;
            if (!*t) break;
            if (ntok == MAX_TOKENS) {
                free(out);
                return nb_fail(NB_ERR_FORMAT, "spec line %d: too many words", entry_line);
            }
            tok[ntok++] = t;
            while (*t && !is_blank(*t)) t++;
            if (*t) *t++ = '\0';
        }
        if (ntok == 0) continue;
        if (too_long) {
            free(out);
            return nb_fail(NB_ERR_FORMAT, "spec line %d: longer than %d characters", entry_line, MAX_LINE - 1);
        }
        if (n == MAX_LAYERS) {
            free(out);
            return nb_fail(NB_ERR_FORMAT, "spec: more than %d layers", MAX_LAYERS);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            nb_layer_spec *q = realloc(out, (size_t)cap * sizeof *q);
            if (!q) {
                free(out);
                return nb_fail(NB_ERR_NOMEM, "spec: out of memory");
            }
            out = q;
        }
        char why[256];
        if (!parse_layer(tok, ntok, &out[n], why, sizeof why)) {
            free(out);
            return nb_fail(NB_ERR_FORMAT, "spec layer %d (line %d, '%s'): %s", n, entry_line, tok[0], why);
        }
        n++;
    }
    if (n == 0) {
        free(out);
        return nb_fail(NB_ERR_FORMAT, "spec: no layers (example: 'conv2d 32 3 relu; maxpool 2; flatten; dense 10')");
    }
    *layers = out;
    *nlayers = n;
    return NB_OK;
}

int nb_layer_spec_check(const nb_layer_spec *l, char *why, size_t n)
{
    static const char *kinds[] = {"dense", "conv2d", "maxpool", "avgpool", "flatten", "dropout", "activation"};
    if ((unsigned)l->kind > NB_LAYER_ACTIVATION) return snprintf(why, n, "unknown layer kind %d", (int)l->kind), 0;
    const char *k = kinds[l->kind];
    if ((unsigned)l->act >= sizeof act_names / sizeof act_names[0])
        return snprintf(why, n, "unknown activation %d", (int)l->act), 0;
    if (l->act && l->kind != NB_LAYER_DENSE && l->kind != NB_LAYER_CONV2D && l->kind != NB_LAYER_ACTIVATION)
        return snprintf(why, n, "%s takes no activation (add a '%s' layer after it)", k, act_names[l->act]), 0;
    if ((l->kind == NB_LAYER_DENSE || l->kind == NB_LAYER_CONV2D) && (l->units < 1 || l->units > MAX_UNITS))
        return snprintf(why, n, "%s units must be 1..%d, got %d", k, MAX_UNITS, l->units), 0;
    if (l->kind == NB_LAYER_CONV2D || l->kind == NB_LAYER_MAXPOOL || l->kind == NB_LAYER_AVGPOOL) {
        if (l->size < 1 || l->size > MAX_SIZE)
            return snprintf(why, n, "%s size must be 1..%d, got %d", k, MAX_SIZE, l->size), 0;
        if (l->stride < 0 || l->stride > MAX_SIZE)
            return snprintf(why, n, "%s stride must be 1..%d (or 0 for the default), got %d", k, MAX_SIZE,
                            l->stride),
                   0;
        if (l->padding != NB_PAD_VALID && l->padding != NB_PAD_SAME)
            return snprintf(why, n, "%s padding must be valid or same, got %d", k, (int)l->padding), 0;
    }
    if (l->kind == NB_LAYER_CONV2D && (l->dilation < 0 || l->dilation > MAX_SIZE))
        return snprintf(why, n, "conv2d dilation must be 1..%d (or 0 for the default), got %d", MAX_SIZE,
                        l->dilation),
               0;
    if (l->kind == NB_LAYER_DROPOUT && !(l->rate >= 0 && l->rate < 1))
        return snprintf(why, n, "dropout rate must be in [0, 1), got %g", l->rate), 0;
    return 1;
}

char *nb_layer_spec_str(const nb_layer_spec *l, char *buf, size_t n)
{
    size_t u = 0;
#define PUT(...) (u += (size_t)snprintf(buf + (u < n ? u : n), u < n ? n - u : 0, __VA_ARGS__))
    if (n) buf[0] = '\0';
    switch (l->kind) {
    case NB_LAYER_DENSE: PUT("dense %d", l->units); break;
    case NB_LAYER_CONV2D: PUT("conv2d %d %d", l->units, l->size); break;
    case NB_LAYER_MAXPOOL: PUT("maxpool %d", l->size); break;
    case NB_LAYER_AVGPOOL: PUT("avgpool %d", l->size); break;
    case NB_LAYER_FLATTEN: PUT("flatten"); break;
    case NB_LAYER_DROPOUT: {
        /* The shortest text that reads back as the same double. */
        char r[40];
        for (int digits = 6; digits <= 17; digits++) {
            snprintf(r, sizeof r, "%.*g", digits, l->rate);
            if (strtod(r, NULL) == l->rate) break;
        }
        PUT("dropout %s", r);
        break;
    }
    case NB_LAYER_ACTIVATION: PUT("%s", l->act == NB_ACT_NONE ? "linear" : nb_activation_name(l->act)); break;
    }
    if ((l->kind == NB_LAYER_DENSE || l->kind == NB_LAYER_CONV2D) && l->act) PUT(" %s", nb_activation_name(l->act));
    if (l->kind == NB_LAYER_CONV2D || l->kind == NB_LAYER_MAXPOOL || l->kind == NB_LAYER_AVGPOOL) {
        if (l->stride && !(l->kind != NB_LAYER_CONV2D && l->stride == l->size) && !(l->kind == NB_LAYER_CONV2D && l->stride == 1))
            PUT(" stride=%d", l->stride);
        if (l->padding == NB_PAD_SAME) PUT(" padding=same");
        if (l->dilation > 1) PUT(" dilation=%d", l->dilation);
    }
#undef PUT
    return buf;
}
