/* The names of the library's enumerations, each list once: what the spec
 * grammar, the model files and the CLI read and write. A parse error names
 * the closest name ("did you mean") and lists them all. */
#include "nn_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Edit distance between a and b (optimal string alignment: insertions,
 * deletions, substitutions and swaps of two neighbours, each one edit).
 * Words longer than 63 characters are compared on their first 63. */
static int edit_distance(const char *a, const char *b)
{
    enum { L = 64 };
    int la = (int)strnlen(a, L - 1), lb = (int)strnlen(b, L - 1);
    int d[L][L];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

const char *nb_suggest(const char *word, const char *const *names, int n)
{
    if (!word || !*word || !names) return NULL;
    const char *best = NULL;
    int best_d = 1 << 30;
    size_t lw = strlen(word);
    for (int i = 0; i < n; i++) {
        if (!names[i]) continue;
        size_t ln = strlen(names[i]);
        size_t shorter = lw < ln ? lw : ln;
        /* one begins the other ("jac" for jacobian, "reverse" for rev): one edit */
        int d = shorter >= 3 && lw != ln && !strncmp(names[i], word, shorter) ? 1 : edit_distance(word, names[i]);
        /* close: at most a third of the longer word wrong (one edit in "relu") */
        size_t longer = lw > ln ? lw : ln;
        if (d > 0 && (size_t)d * 3 <= longer + 1 && d < best_d) best = names[i], best_d = d;
    }
    return best;
}

/* One enumeration's names: value i is names[i]; aliases[] pairs an older or
 * longer spelling with its value. */
typedef struct {
    const char *what; /* "activation", for messages */
    const char *const *names;
    int n;
    const char *const *alias_names;
    const int *alias_values;
    int naliases;
} name_list;

static const char *name_of(const name_list *l, int v)
{
    return v >= 0 && v < l->n ? l->names[v] : "?";
}

static nb_status parse_name(const name_list *l, const char *text, int *out)
{
    if (!text) return nb_fail(NB_ERR_ARG, "%s: NULL name", l->what);
    for (int i = 0; i < l->n; i++)
        if (!strcmp(text, l->names[i])) return *out = i, NB_OK;
    for (int i = 0; i < l->naliases; i++)
        if (!strcmp(text, l->alias_names[i])) return *out = l->alias_values[i], NB_OK;
    char all[256];
    size_t u = 0;
    for (int i = 0; i < l->n && u < sizeof all; i++)
        u += (size_t)snprintf(all + u, sizeof all - u, "%s%s", i ? ", " : "", l->names[i]);
    const char *close = nb_suggest(text, l->names, l->n);
    if (close) return nb_fail(NB_ERR_ARG, "unknown %s '%.64s'; did you mean '%s'? (%s)", l->what, text, close, all);
    return nb_fail(NB_ERR_ARG, "unknown %s '%.64s' (%s)", l->what, text, all);
}

/* Defines nb_<prefix>_name and nb_<prefix>_parse for an enumeration type. */
#define NAMES(prefix, type, what_text, alias_n, alias_v, nalias, ...)                                                  \
    static const char *const prefix##_names[] = {__VA_ARGS__};                                                         \
    static const name_list prefix##_list = {                                                                           \
        what_text, prefix##_names, (int)(sizeof prefix##_names / sizeof prefix##_names[0]), alias_n, alias_v, nalias}; \
    const char *nb_##prefix##_name(type v)                                                                             \
    {                                                                                                                  \
        return name_of(&prefix##_list, (int)v);                                                                        \
    }                                                                                                                  \
    nb_status nb_##prefix##_parse(const char *text, type *out)                                                         \
    {                                                                                                                  \
        int v = 0;                                                                                                     \
        nb_status s = out ? parse_name(&prefix##_list, text, &v) : nb_fail(NB_ERR_ARG, "%s: NULL output", what_text);  \
        if (!s) *out = (type)v;                                                                                        \
        return s;                                                                                                      \
    }

/* "none": what nabla wrote for a bare identity layer before "linear". */
static const char *const act_alias_names[] = {"none"};
static const int act_alias_values[] = {NB_ACT_NONE};
static const char *const sched_alias_names[] = {"exponential"};
static const int sched_alias_values[] = {NB_SCHED_EXPONENTIAL};

/* In enum order. */
NAMES(activation, nb_activation, "activation", act_alias_names, act_alias_values, 1, "linear", "relu", "sigmoid",
      "tanh", "softmax", "log_softmax", "leaky_relu", "elu", "softplus", "gelu")
NAMES(loss, nb_loss_kind, "loss", NULL, NULL, 0, "cce", "mse", "bce")
NAMES(optimizer, nb_optimizer, "optimizer", NULL, NULL, 0, "sgd", "adam", "adamw", "rmsprop")
NAMES(schedule, nb_schedule, "schedule", sched_alias_names, sched_alias_values, 1, "constant", "step", "exp", "cosine")
NAMES(jac_mode, nb_jac_mode, "Jacobian mode", NULL, NULL, 0, "auto", "rev", "fwd", "numeric")
NAMES(init, nb_init, "initialiser", NULL, NULL, 0, "glorot", "he", "he-normal", "torch")

const char *const *nb_activation_names(int *n)
{
    *n = activation_list.n;
    return activation_names;
}
