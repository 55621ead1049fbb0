/* The model spec grammar (DESIGN.md): one layer per line or ';', '#' starts
 * a comment. The words of a layer are read, printed and checked from its
 * kind's entry in the layer table (src/nn/layers): its keyword, its
 * positional arguments in order, then key=value options. Every number is
 * range-checked so that a hostile spec cannot ask for absurd allocations. */
#include "layers/layers.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <threads.h>

enum { MAX_LAYERS = 1024, MAX_TOKENS = 16, MAX_LINE = 512, MAX_WORDS = 64 };

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int *int_at(nb_layer_spec *l, size_t field)
{
    return (int *)(void *)((char *)l + field);
}
static int int_of(const nb_layer_spec *l, size_t field)
{
    return *(const int *)(const void *)((const char *)l + field);
}

/* The arguments' lower-case names in messages ("conv2d filters must be"). */
static void lower(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    out[i] = '\0';
}

/* ------------------------------------------------------------ kinds */

const char *nb_layer_kind_name(nb_layer_kind k)
{
    const nb_layer_type *t = nb_layer_type_of(k);
    return t ? t->keyword : NULL;
}

const char *nb_layer_kind_example(nb_layer_kind k)
{
    const nb_layer_type *t = nb_layer_type_of(k);
    return t ? t->example : NULL;
}

void nb_layer_usage(const nb_layer_type *t, char *buf, size_t n)
{
    size_t u = 0;
#define PUT(...) (u += (size_t)snprintf(buf + (u < n ? u : n), u < n ? n - u : 0, __VA_ARGS__))
    PUT("%s", t->act_is_keyword ? "ACT" : t->keyword);
    for (int i = 0; i < t->nargs; i++) {
        const nb_layer_arg *a = &t->args[i];
        if (a->type == NB_ARG_NAMES)
            PUT(a->hi > 1 ? " %s [%s ...]" : " %s", a->name, a->name);
        else if (!(a->flags & NB_ARG_KEY))
            PUT(a->flags & NB_ARG_OPTIONAL ? " [%s]" : " %s", a->name);
        else if (a->type == NB_ARG_PADDING)
            PUT(a->hi > 0 ? " [%s=valid|same|P]" : " [%s=valid|same]", a->name);
        else
            PUT(" [%s=%s]", a->name, a->meta ? a->meta : "V");
    }
#undef PUT
}

static char usages[NB_LAYER_KIND_COUNT][160]; /* written once, under call_once */
static once_flag usages_once = ONCE_FLAG_INIT;
static void make_usages(void)
{
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++)
        nb_layer_usage(nb_layer_type_of((nb_layer_kind)k), usages[k], 160);
}

const char *nb_layer_kind_usage(nb_layer_kind k)
{
    if ((unsigned)k >= NB_LAYER_KIND_COUNT) return NULL;
    call_once(&usages_once, make_usages);
    return usages[k];
}

/* 1 if word names an activation (with *a set), without touching the
 * thread's last error as a failed nb_activation_parse would. */
static int is_activation(const char *word, nb_activation *a)
{
    int n;
    const char *const *names = nb_activation_names(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(word, names[i])) return *a = (nb_activation)i, 1;
    if (!strcmp(word, "none")) return *a = NB_ACT_NONE, 1; /* older files' "linear" */
    return 0;
}

/* Every first word the grammar reads (keywords, aliases, activations), for
 * "did you mean"; n gets the count. */
static int first_words(const char **w)
{
    int n = 0;
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++) {
        const nb_layer_type *t = nb_layer_type_of((nb_layer_kind)k);
        if (t->act_is_keyword) {
            int na;
            const char *const *names = nb_activation_names(&na);
            for (int a = 0; a < na && n < MAX_WORDS; a++)
                w[n++] = names[a];
            continue;
        }
        if (n < MAX_WORDS) w[n++] = t->keyword;
        for (int i = 0; t->aliases && t->aliases[i] && n < MAX_WORDS; i++)
            w[n++] = t->aliases[i];
    }
    return n;
}

/* The kind whose first word is word, with the index of the argument the
 * next words fill in *first (and presets in l); NULL if none. */
static const nb_layer_type *find_kind(const char *word, nb_layer_spec *l, int *first)
{
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++) {
        const nb_layer_type *t = nb_layer_type_of((nb_layer_kind)k);
        *first = -1;
        if (t->match)
            *first = t->match(word, l);
        else if (t->act_is_keyword) {
            if (is_activation(word, &l->act)) *first = 0;
        } else {
            if (!strcmp(word, t->keyword)) *first = 0;
            for (int i = 0; t->aliases && t->aliases[i] && *first < 0; i++)
                if (!strcmp(word, t->aliases[i])) *first = 0;
        }
        if (*first >= 0) return t;
    }
    return NULL;
}

/* ------------------------------------------------------------ parse */

/* 1 if s can name an output: [A-Za-z_][A-Za-z0-9_]*, shorter than
 * NB_SPEC_NAME_MAX, and not a word of the grammar's own ("as"). */
static int valid_name(const char *s)
{
    size_t k = 0;
    for (; s[k]; k++) {
        char c = s[k];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(k && c >= '0' && c <= '9')) return 0;
    }
    return k > 0 && k < NB_SPEC_NAME_MAX && strcmp(s, "as") != 0;
}

/* The remaining words as names (NB_ARG_NAMES); 0 with the reason in why. */
static int parse_names(const nb_layer_type *t, const nb_layer_arg *a, char **tok, int ntok, nb_layer_spec *l,
                       char *why, size_t n)
{
    if (ntok < a->lo || ntok > a->hi) {
        if (a->hi > a->lo)
            return snprintf(why, n, "%s takes %.0f to %.0f names of earlier outputs (or 'input'), got %d", t->keyword,
                            a->lo, a->hi, ntok),
                   0;
        return snprintf(why, n, "%s takes %.0f name of an earlier output (or 'input'), got %d", t->keyword, a->lo,
                        ntok),
               0;
    }
    for (int i = 0; i < ntok; i++) {
        if (!valid_name(tok[i]))
            return snprintf(why, n, "'%s' is not a name (letters, digits and '_', not starting with a digit, at most "
                            "%d characters)", tok[i], NB_SPEC_NAME_MAX - 1),
                   0;
        snprintf(l->refs[i], NB_SPEC_NAME_MAX, "%s", tok[i]);
    }
    l->nrefs = ntok;
    return 1;
}

/* Reads one argument's word into l; 0 with the reason in why. */
static int parse_value(const nb_layer_type *t, const nb_layer_arg *a, const char *v, nb_layer_spec *l, char *why,
                       size_t n)
{
    char *end;
    const char *name = a->name;
    switch (a->type) {
    case NB_ARG_KSIZE:
        if (strchr(v, 'x')) { /* "3x3": square kernels only */
            errno = 0;
            long h = strtol(v, &end, 10), w = *end == 'x' ? strtol(end + 1, &end, 10) : -1;
            if (errno || *end || h != w || h < a->lo || h > a->hi)
                return snprintf(why, n, "kernel %s must be one number (square kernels), e.g. 3, not '%s'", name, v), 0;
            *int_at(l, a->field) = (int)h;
            return 1;
        }
        /* fall through */
    case NB_ARG_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < a->lo || x > a->hi)
            return snprintf(why, n, "%s must be an integer in %.0f..%.0f, got '%s'", name, a->lo, a->hi, v), 0;
        *int_at(l, a->field) = (int)x;
        return 1;
    }
    case NB_ARG_REAL: {
        double x = strtod(v, &end);
        if (end == v || *end || !(x >= a->lo && x < a->hi))
            return snprintf(why, n, "%s must be a number in [%g, %g), got '%s'", name, a->lo, a->hi, v), 0;
        /* a key at its default is stored as 0 (the default), so it prints as left out */
        *(double *)(void *)((char *)l + a->field) = (a->flags & NB_ARG_KEY) && x == a->def_real ? 0 : x;
        return 1;
    }
    case NB_ARG_ACT: {
        nb_activation act;
        if (nb_activation_parse(v, &act)) return snprintf(why, n, "%s", nb_last_error()), 0;
        *(nb_activation *)(void *)((char *)l + a->field) = act;
        return 1;
    }
    case NB_ARG_PADDING: {
        nb_padding *pad = (nb_padding *)(void *)((char *)l + a->field);
        if (!strcmp(v, "valid") || !strcmp(v, "same")) {
            *pad = v[0] == 's' ? NB_PAD_SAME : NB_PAD_VALID;
            return 1;
        }
        /* padding=P (kinds whose argument has hi > 0): P zeros on every side; 0 is 'valid' */
        errno = 0;
        long long x = a->hi > 0 && v[0] >= '0' && v[0] <= '9' ? strtoll(v, &end, 10) : -1;
        if (a->hi > 0 && x >= 0 && !errno && *end == 0 && x <= a->hi) {
            *pad = x ? NB_PAD_EXPLICIT : NB_PAD_VALID;
            l->pad = (int)x;
            return 1;
        }
        if (a->hi > 0)
            return snprintf(why, n, "%s must be 'valid', 'same' or a number of pixels 0..%.0f, not '%s'", name, a->hi,
                            v),
                   0;
        return snprintf(why, n, "%s must be 'valid' or 'same', not '%s'", name, v), 0;
    }
    case NB_ARG_NAMES: break; /* read by parse_names, never one word */
    }
    return snprintf(why, n, "argument %s of %s has an unknown type", a->name, t->keyword), 0;
}

/* 1 if word would be read by a later argument of t than a (an activation,
 * key=value), so that a required argument is missing before it. */
static int fits_later(const nb_layer_type *t, const nb_layer_arg *a, const char *word)
{
    if (strchr(word, '=')) return 1;
    for (const nb_layer_arg *b = a + 1; b < t->args + t->nargs; b++) {
        nb_activation act;
        if (b->type == NB_ARG_ACT && is_activation(word, &act)) return 1;
    }
    return 0;
}

/* key=value: the key's argument of t, or the reason it has none. */
static const nb_layer_arg *find_key(const nb_layer_type *t, const char *word, size_t klen, char *why, size_t n)
{
    const char *keys[16];
    int nk = 0;
    for (int i = 0; i < t->nargs; i++) {
        const nb_layer_arg *a = &t->args[i];
        if (!(a->flags & NB_ARG_KEY)) continue;
        if (strlen(a->name) == klen && !strncmp(word, a->name, klen)) return a;
        if (nk < 16) keys[nk++] = a->name;
    }
    if (!nk) return snprintf(why, n, "%s takes no options, got '%s'", t->keyword, word), NULL;
    char key[40];
    snprintf(key, sizeof key, "%.*s", (int)(klen < 39 ? klen : 39), word);
    const char *close = nb_suggest(key, keys, nk);
    size_t u = (size_t)snprintf(why, n, "unknown option '%s'", key);
    if (close && u < n) u += (size_t)snprintf(why + u, n - u, "; did you mean '%s'?", close);
    if (u < n) u += (size_t)snprintf(why + u, n - u, " (%s takes", t->keyword);
    for (int i = 0; i < nk && u < n; i++)
        u += (size_t)snprintf(why + u, n - u, "%s %s", i ? "," : "", keys[i]);
    if (u < n) snprintf(why + u, n - u, ")");
    return NULL;
}

static int unknown_layer(const char *kw, char *why, size_t n)
{
    const char *words[MAX_WORDS];
    int nw = first_words(words);
    const char *close = nb_suggest(kw, words, nw);
    size_t u = (size_t)snprintf(why, n, "unknown layer '%s'", kw);
    if (close && u < n) u += (size_t)snprintf(why + u, n - u, "; did you mean '%s'?", close);
    if (u < n) u += (size_t)snprintf(why + u, n - u, " (layers:");
    for (int k = 0; k < NB_LAYER_KIND_COUNT && u < n; k++) {
        const nb_layer_type *t = nb_layer_type_of((nb_layer_kind)k);
        if (!t->act_is_keyword) u += (size_t)snprintf(why + u, n - u, " %s", t->keyword);
    }
    if (u < n) u += (size_t)snprintf(why + u, n - u, "; activations:");
    int na;
    const char *const *names = nb_activation_names(&na);
    for (int a = 0; a < na && u < n; a++)
        u += (size_t)snprintf(why + u, n - u, " %s", names[a]);
    if (u < n) snprintf(why + u, n - u, ")");
    return 0;
}

/* One layer from its words; why gets the reason on failure. */
static int parse_layer(char **tok, int ntok, nb_layer_spec *l, char *why, size_t n)
{
    memset(l, 0, sizeof *l);
    for (int i = 0; i < ntok; i++)
        if (strchr(tok[i], ','))
            return snprintf(why, n, "unexpected ',' in '%s': layers are separated by ';' or a new line", tok[i]), 0;
    if (ntok >= 2 && !strcmp(tok[ntok - 2], "as")) { /* ENTRY as NAME */
        if (!valid_name(tok[ntok - 1]) || !strcmp(tok[ntok - 1], "input"))
            return snprintf(why, n, "'%s' cannot name an output (letters, digits and '_', not starting with a digit, "
                            "at most %d characters, not 'input')", tok[ntok - 1], NB_SPEC_NAME_MAX - 1),
                   0;
        snprintf(l->name, sizeof l->name, "%s", tok[ntok - 1]);
        ntok -= 2;
    } else if (ntok >= 1 && !strcmp(tok[ntok - 1], "as")) {
        return snprintf(why, n, "'as' needs a name after it (ENTRY as NAME)"), 0;
    }
    if (ntok == 0) return snprintf(why, n, "'as %s' names nothing: put it after an entry", l->name), 0;
    int first;
    const nb_layer_type *t = find_kind(tok[0], l, &first);
    if (!t) return unknown_layer(tok[0], why, n);
    l->kind = t->kind;
    char usage[160];
    nb_layer_usage(t, usage, sizeof usage);
    int w = 1;
    for (int i = first; i < t->nargs; i++) { /* positional arguments, in order */
        const nb_layer_arg *a = &t->args[i];
        if (a->flags & NB_ARG_KEY) break;
        if (a->type == NB_ARG_NAMES) {
            if (!parse_names(t, a, tok + w, ntok - w, l, why, n)) return 0;
            w = ntok;
            continue;
        }
        if (a->flags & NB_ARG_OPTIONAL) {
            if (w < ntok && !strchr(tok[w], '=') && !parse_value(t, a, tok[w++], l, why, n)) return 0;
            continue;
        }
        if (w >= ntok || fits_later(t, a, tok[w]))
            return snprintf(why, n, "missing %s%s%s%s (usage: %s)", a->name, w < ntok ? " before '" : "",
                            w < ntok ? tok[w] : "", w < ntok ? "'" : "", usage),
                   0;
        if (!parse_value(t, a, tok[w++], l, why, n)) return 0;
    }
    for (; w < ntok; w++) { /* key=value options */
        const char *eq = strchr(tok[w], '=');
        if (!eq) return snprintf(why, n, "unexpected '%s' (usage: %s)", tok[w], usage), 0;
        const nb_layer_arg *a = find_key(t, tok[w], (size_t)(eq - tok[w]), why, n);
        if (!a || !parse_value(t, a, eq + 1, l, why, n)) return 0;
    }
    return 1;
}

/* Splits buf into words in place (not strtok: its hidden state is shared
 * between threads); -1 if there are more than MAX_TOKENS. */
static int split_words(char *buf, char **tok)
{
    int ntok = 0;
    for (char *t = buf;;) {
        while (*t && is_blank(*t))
            t++;
        if (!*t) break;
        if (ntok == MAX_TOKENS) return -1;
        tok[ntok++] = t;
        while (*t && !is_blank(*t))
            t++;
        if (*t) *t++ = '\0';
    }
    return ntok;
}

/* Appends room for one more layer to *out; 0 when out of memory. */
static int grow(nb_layer_spec **out, int n, int *cap)
{
    if (n < *cap) return 1;
    int c = *cap ? *cap * 2 : 8;
    nb_layer_spec *q = realloc(*out, (size_t)c * sizeof *q);
    if (!q) return 0;
    *out = q, *cap = c;
    return 1;
}

nb_status nb_spec_parse(const char *spec, nb_layer_spec **layers, int *nlayers)
{
    if (!spec || !layers || !nlayers) return nb_fail(NB_ERR_ARG, "spec: NULL argument");
    *layers = NULL;
    *nlayers = 0;
    nb_layer_spec *out = NULL;
    int n = 0, cap = 0, line = 1;
    nb_status s = NB_OK;
    for (const char *p = spec; *p && !s;) {
        /* One entry: up to ';' or newline; a comment runs to the newline. */
        char buf[MAX_LINE], *tok[MAX_TOKENS], why[512], first[96]; /* first: tok[0] as quoted */
        size_t len = 0;
        int too_long = 0, entry_line = line;
        for (; *p && *p != ';' && *p != '\n' && *p != '#'; p++)
            if (len + 1 < sizeof buf)
                buf[len++] = *p;
            else
                too_long = 1;
        if (*p == '#')
            while (*p && *p != '\n')
                p++;
        if (*p == '\n') line++;
        if (*p) p++;
        buf[len] = '\0';
        int ntok = split_words(buf, tok);
        if (ntok == 0) continue;
        if (ntok < 0)
            s = nb_fail(NB_ERR_FORMAT, "spec line %d: too many words", entry_line);
        else if (too_long)
            s = nb_fail(NB_ERR_FORMAT, "spec line %d: longer than %d characters", entry_line, MAX_LINE - 1);
        else if (n == MAX_LAYERS)
            s = nb_fail(NB_ERR_FORMAT, "spec: more than %d layers", MAX_LAYERS);
        else if (!grow(&out, n, &cap))
            s = nb_fail(NB_ERR_NOMEM, "spec: out of memory");
        else if (!parse_layer(tok, ntok, &out[n], why, sizeof why))
            s = nb_fail(NB_ERR_FORMAT, "spec layer %d (line %d, '%s'): %s", n, entry_line,
                        nb_escape_text(first, sizeof first, tok[0], SIZE_MAX), why);
        else
            n++;
    }
    if (!s && n == 0)
        s = nb_fail(NB_ERR_FORMAT, "spec: no layers (example: 'conv2d 32 3 relu; maxpool 2; flatten; dense 10')");
    if (s) {
        free(out);
        return s;
    }
    *layers = out;
    *nlayers = n;
    return NB_OK;
}

/* ------------------------------------------------------------ check */

static int check_arg(const nb_layer_type *t, const nb_layer_arg *a, const nb_layer_spec *l, char *why, size_t n)
{
    char name[32];
    lower(a->name, name, sizeof name);
    switch (a->type) {
    case NB_ARG_INT:
    case NB_ARG_KSIZE: {
        int v = int_of(l, a->field);
        if (v >= a->lo && v <= a->hi) return 1;
        if (a->flags & NB_ARG_KEY) {
            if (v == 0) return 1;
            return snprintf(why, n, "%s %s must be %.0f..%.0f (or 0 for the default), got %d", t->keyword, name, a->lo,
                            a->hi, v),
                   0;
        }
        return snprintf(why, n, "%s %s must be %.0f..%.0f, got %d", t->keyword, name, a->lo, a->hi, v), 0;
    }
    case NB_ARG_REAL: {
        double v = *(const double *)(const void *)((const char *)l + a->field);
        if ((v >= a->lo && v < a->hi) || ((a->flags & NB_ARG_KEY) && v == 0)) return 1;
        return snprintf(why, n, "%s %s must be in [%g, %g), got %g", t->keyword, name, a->lo, a->hi, v), 0;
    }
    case NB_ARG_PADDING: {
        nb_padding v = *(const nb_padding *)(const void *)((const char *)l + a->field);
        if ((v == NB_PAD_VALID || v == NB_PAD_SAME) && l->pad == 0) return 1;
        if (v == NB_PAD_EXPLICIT && a->hi > 0 && l->pad >= 1 && l->pad <= a->hi) return 1;
        if (v == NB_PAD_EXPLICIT && a->hi > 0)
            return snprintf(why, n, "%s %s=P must be 1..%.0f pixels, got %d", t->keyword, name, a->hi, l->pad), 0;
        if (v == NB_PAD_EXPLICIT)
            return snprintf(why, n, "%s %s must be valid or same (a number of pixels is for conv2d)", t->keyword, name),
                   0;
        if (v == NB_PAD_VALID || v == NB_PAD_SAME)
            return snprintf(why, n, "%s has pad %d but %s=%s (pad is for %s=P)", t->keyword, l->pad, name,
                            v == NB_PAD_SAME ? "same" : "valid", name),
                   0;
        return snprintf(why, n, "%s %s must be valid or same, got %d", t->keyword, name, (int)v), 0;
    }
    case NB_ARG_ACT: return 1; /* checked for every kind */
    case NB_ARG_NAMES:
        if (l->nrefs < a->lo || l->nrefs > a->hi)
            return snprintf(why, n, "%s takes %.0f..%.0f names, got %d", t->keyword, a->lo, a->hi, l->nrefs), 0;
        for (int i = 0; i < l->nrefs; i++)
            if (!memchr(l->refs[i], 0, NB_SPEC_NAME_MAX) || !valid_name(l->refs[i]))
                return snprintf(why, n, "%s: reference %d is not a valid name", t->keyword, i), 0;
        return 1;
    }
    return 1;
}

int nb_layer_spec_check(const nb_layer_spec *l, char *why, size_t n)
{
    const nb_layer_type *t = nb_layer_type_of(l->kind);
    if (!t) return snprintf(why, n, "unknown layer kind %d", (int)l->kind), 0;
    int na;
    nb_activation_names(&na);
    if ((unsigned)l->act >= (unsigned)na) return snprintf(why, n, "unknown activation %d", (int)l->act), 0;
    int takes_act = t->act_is_keyword;
    for (int i = 0; i < t->nargs; i++)
        takes_act |= t->args[i].type == NB_ARG_ACT;
    if (l->act && !takes_act)
        return snprintf(why, n, "%s takes no activation (add a '%s' layer after it)", t->keyword,
                        nb_activation_name(l->act)),
               0;
    for (int i = 0; i < t->nargs; i++)
        if (!check_arg(t, &t->args[i], l, why, n)) return 0;
    if (l->name[0] && (!memchr(l->name, 0, sizeof l->name) || !valid_name(l->name) || !strcmp(l->name, "input")))
        return snprintf(why, n, "layer name is not a valid name (letters, digits, '_'; not 'input')"), 0;
    return 1;
}

/* ------------------------------------------------------------ print */

/* Appends one argument's text (nothing for a default). */
static size_t print_arg(const nb_layer_arg *a, const nb_layer_spec *l, char *buf, size_t n)
{
    const char *field = (const char *)l + a->field;
    switch (a->type) {
    case NB_ARG_INT:
    case NB_ARG_KSIZE: {
        int v = int_of(l, a->field);
        if (!(a->flags & NB_ARG_KEY)) return (size_t)snprintf(buf, n, " %d", v);
        int def = a->def_field ? int_of(l, a->def_field) : a->def;
        return v && v != def ? (size_t)snprintf(buf, n, " %s=%d", a->name, v) : 0;
    }
    case NB_ARG_REAL: {
        /* The shortest text that reads back as the same double. */
        double v = *(const double *)(const void *)field;
        if ((a->flags & NB_ARG_KEY) && (v == 0 || v == a->def_real)) return 0;
        char r[40];
        nb_format_double(v, r, sizeof r);
        return a->flags & NB_ARG_KEY ? (size_t)snprintf(buf, n, " %s=%s", a->name, r)
                                     : (size_t)snprintf(buf, n, " %s", r);
    }
    case NB_ARG_ACT: {
        nb_activation v = *(const nb_activation *)(const void *)field;
        if (!v) return 0;
        return a->flags & NB_ARG_KEY ? (size_t)snprintf(buf, n, " %s=%s", a->name, nb_activation_name(v))
                                     : (size_t)snprintf(buf, n, " %s", nb_activation_name(v));
    }
    case NB_ARG_PADDING: {
        const nb_padding v = *(const nb_padding *)(const void *)field;
        if (v == NB_PAD_EXPLICIT) return (size_t)snprintf(buf, n, " %s=%d", a->name, l->pad);
        return v == NB_PAD_SAME ? (size_t)snprintf(buf, n, " %s=same", a->name) : 0;
    }
    case NB_ARG_NAMES: {
        size_t u = 0;
        for (int i = 0; i < l->nrefs; i++)
            u += (size_t)snprintf(buf + (u < n ? u : n), u < n ? n - u : 0, " %s", l->refs[i]);
        return u;
    }
    }
    return 0;
}

char *nb_layer_spec_str(const nb_layer_spec *l, char *buf, size_t n)
{
    if (n) buf[0] = '\0';
    const nb_layer_type *t = nb_layer_type_of(l->kind);
    if (!t) return buf;
    size_t u = (size_t)snprintf(buf, n, "%s", t->act_is_keyword ? nb_activation_name(l->act) : t->keyword);
    for (int i = 0; i < t->nargs; i++)
        u += print_arg(&t->args[i], l, buf + (u < n ? u : n), u < n ? n - u : 0);
    if (l->name[0]) snprintf(buf + (u < n ? u : n), u < n ? n - u : 0, " as %s", l->name);
    return buf;
}
