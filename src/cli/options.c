/* The CLI's shared option parser and --help printer (options.h). */
#include "options.h"

#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Levenshtein distance of a and b (both short: option and command names);
 * words longer than 63 characters are compared by their first 63. */
static int edit_distance(const char *a, const char *b)
{
    int n = (int)strnlen(a, 63), m = (int)strnlen(b, 63);
    int row[64];
    for (int j = 0; j <= m; j++) row[j] = j;
    for (int i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= m; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[m];
}

const char *cli_did_you_mean(const char *word, const char *const *names, int n)
{
    const char *best = NULL, *prefix = NULL;
    int best_d = 1 << 30, prefixes = 0;
    size_t wl = strlen(word);
    for (int i = 0; i < n; i++) {
        if (!names[i]) continue;
        int d = edit_distance(word, names[i]);
        if (d < best_d) best_d = d, best = names[i];
        if (wl >= 3 && !strncmp(names[i], word, wl)) prefixes++, prefix = names[i];
    }
    /* A typo: at most 2 edits, and fewer than half the word ("--lr" is not
     * "--out"). Else a unique prefix ("--epo" -> "--epochs"). */
    int limit = (int)wl / 2 < 2 ? (int)wl / 2 : 2;
    if (best && best_d <= limit) return best;
    return prefixes == 1 ? prefix : NULL;
}

const char *cli_choice_name(const cli_choice *choices, int value)
{
    for (const cli_choice *c = choices; c && c->name; c++)
        if (c->value == value) return c->name;
    return "?";
}

static int usage_fail(const cli_spec *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_fail(const cli_spec *spec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nabla %s: ", spec->name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'nabla %s --help')\n", spec->name);
    return 2;
}

/* "an integer from 1 to 256", "a positive finite number", ... into buf. */
static const char *describe_range(const cli_opt *o, char *buf, size_t n)
{
    const int any = o->lo == 0 && o->hi == 0, open_top = o->hi >= 1e9;
    if (o->type == CLI_INT) {
        if (open_top) snprintf(buf, n, "an integer >= %.0f", o->lo);
        else snprintf(buf, n, "an integer from %.0f to %.0f", o->lo, o->hi);
    } else if (any) {
        snprintf(buf, n, "a finite number");
    } else if (o->flags & CLI_GT_LO) {
        if (o->lo == 0 && open_top) snprintf(buf, n, "a positive finite number");
        else if (open_top) snprintf(buf, n, "a finite number > %g", o->lo);
        else snprintf(buf, n, "a number > %g and <= %g", o->lo, o->hi);
    } else if (open_top) {
        snprintf(buf, n, "a finite number >= %g", o->lo);
    } else {
        snprintf(buf, n, "a number from %g to %g", o->lo, o->hi);
    }
    return buf;
}

/* Strict numbers: the whole text, no leading space or sign games. */
static int parse_ll(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno) return 0;
    *out = v;
    return 1;
}

static int parse_real(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || (errno && v != 0) || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_choice(const cli_spec *spec, const cli_opt *o, const char *v, int *out)
{
    const char *names[32];
    int n = 0;
    char list[256] = "";
    size_t u = 0;
    for (const cli_choice *c = o->choices; c && c->name; c++) {
        if (!strcmp(c->name, v)) {
            *out = c->value;
            return -1;
        }
        if (n < 32) names[n++] = c->name;
        if (u < sizeof list) u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", u ? ", " : "", c->name);
    }
    const char *guess = cli_did_you_mean(v, names, n);
    if (guess) return usage_fail(spec, "unknown %s '%s': did you mean %s? (the choices: %s)", o->name, v, guess, list);
    return usage_fail(spec, "unknown %s '%s' (the choices: %s)", o->name, v, list);
}

/* Stores the text v of option o into args: -1, or 2 after a usage error. */
static int store(const cli_spec *spec, const cli_opt *o, const char *v, void *args)
{
    char *field = (char *)args + o->offset, range[96];
    long long n;
    double d;
    switch (o->type) {
    case CLI_FLAG:
        *(int *)field = 1;
        return -1;
    case CLI_STR:
        *(const char **)field = v;
        return -1;
    case CLI_CHOICE:
        return parse_choice(spec, o, v, (int *)field);
    case CLI_INT:
        if (!parse_ll(v, &n) || (double)n < o->lo || (double)n > o->hi) break;
        *(long long *)field = n;
        return -1;
    case CLI_REAL: {
        int any = o->lo == 0 && o->hi == 0;
        if (!parse_real(v, &d)) break;
        if (!any && (d < o->lo || d > o->hi || ((o->flags & CLI_GT_LO) && d == o->lo))) break;
        memcpy(field, &d, sizeof d); /* the args struct's double, at its offset */
        return -1;
    }
    }
    return usage_fail(spec, "%s must be %s, got '%s'", o->name, describe_range(o, range, sizeof range), v);
}

static const cli_opt *find_opt(const cli_spec *spec, const char *name, size_t len)
{
    for (int i = 0; i < spec->nopts; i++) {
        const cli_opt *o = &spec->opts[i];
        if ((strlen(o->name) == len && !strncmp(o->name, name, len)) ||
            (o->alias && strlen(o->alias) == len && !strncmp(o->alias, name, len)))
            return o;
    }
    return NULL;
}

static int unknown_option(const cli_spec *spec, const char *arg, size_t len)
{
    const char *names[128];
    int n = 0;
    for (int i = 0; i < spec->nopts && n < 127; i++) names[n++] = spec->opts[i].name;
    names[n++] = "--help";
    char word[128];
    snprintf(word, sizeof word, "%.*s", (int)(len < 127 ? len : 127), arg);
    if (arg[0] != '-') return usage_fail(spec, "unexpected argument '%s' (options start with --)", arg);
    const char *guess = cli_did_you_mean(word, names, n);
    if (guess) return usage_fail(spec, "unknown option '%s' (did you mean %s?)", word, guess);
    return usage_fail(spec, "unknown option '%s'", word);
}

/* The defaults, parsed as if typed (a bad default is a bug: exit 2 shows it). */
static int set_defaults(const cli_spec *spec, void *args)
{
    for (int i = 0; i < spec->nopts; i++) {
        const cli_opt *o = &spec->opts[i];
        if (o->def && o->type != CLI_FLAG) {
            int r = store(spec, o, o->def, args);
            if (r >= 0) return r;
        }
    }
    return -1;
}

static int missing_required(const cli_spec *spec, const unsigned char *given)
{
    char list[256] = "";
    size_t u = 0;
    int missing = 0, total = 0;
    for (int i = 0; i < spec->nopts; i++) total += (spec->opts[i].flags & CLI_REQUIRED) && !given[i];
    for (int i = 0; i < spec->nopts; i++) {
        if (!(spec->opts[i].flags & CLI_REQUIRED) || given[i]) continue;
        const char *sep = !missing ? "" : missing == total - 1 ? (total > 2 ? ", and " : " and ") : ", ";
        if (u < sizeof list) u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", sep, spec->opts[i].name);
        missing++;
    }
    if (!missing) return -1;
    return usage_fail(spec, "%s %s required", list, missing > 1 ? "are" : "is");
}

int cli_parse(const cli_spec *spec, int argc, char **argv, void *args)
{
    unsigned char given[128] = {0};
    cli_choices_init();
    int r = set_defaults(spec, args);
    if (r >= 0) return r;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strncmp(arg, "--", 2) ? NULL : strchr(arg, '=');
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            cli_print_help(spec, stdout);
            return 0;
        }
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const cli_opt *o = find_opt(spec, arg, len);
        if (!o) return unknown_option(spec, arg, len);
        const char *v = eq ? eq + 1 : NULL;
        if (o->type == CLI_FLAG && v) return usage_fail(spec, "%s takes no value, got '%s'", o->name, arg);
        if (o->type != CLI_FLAG && !v) {
            if (i + 1 >= argc) return usage_fail(spec, "option '%s' needs a value", o->name);
            v = argv[++i];
        }
        if ((r = store(spec, o, v, args)) >= 0) return r;
        if (o - spec->opts < (long)sizeof given) given[o - spec->opts] = 1;
    }
    return missing_required(spec, given);
}

/* "  --name, -o METAVAR" then the help, wrapped at its '\n's, at column 24. */
static void print_opt(const cli_opt *o, FILE *f)
{
    char left[160], meta[128] = "";
    if (o->type != CLI_FLAG && o->metavar) snprintf(meta, sizeof meta, " %s", o->metavar);
    else if (o->type == CLI_CHOICE) {
        size_t u = 0;
        for (const cli_choice *c = o->choices; c && c->name && u < sizeof meta; c++)
            u += (size_t)snprintf(meta + u, sizeof meta - u, "%s%s", u ? "|" : " ", c->name);
    } else if (o->type != CLI_FLAG)
        snprintf(meta, sizeof meta, " X");
    snprintf(left, sizeof left, "  %s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name, meta);
    fputs(left, f);
    const int col = 24;
    int at = (int)strlen(left);
    if (at >= col - 1) fputc('\n', f), at = 0;
    const char *h = o->help ? o->help : "";
    while (1) {
        const char *nl = strchr(h, '\n');
        int len = nl ? (int)(nl - h) : (int)strlen(h);
        fprintf(f, "%*s%.*s", col - at, "", len, h);
        at = col + len;
        if (!nl) break;
        fputc('\n', f), at = 0;
        h = nl + 1;
    }
    if (o->def && o->type != CLI_FLAG) fprintf(f, " (default %s)", o->def);
    if (o->flags & CLI_REQUIRED) fprintf(f, " (required)");
    fputc('\n', f);
}

void cli_print_help(const cli_spec *spec, FILE *f)
{
    cli_choices_init();
    fprintf(f, "usage: nabla %s %s\n", spec->name, spec->usage);
    if (spec->about) fprintf(f, "\n%s", spec->about);
    if (spec->nopts) fprintf(f, "\noptions (--name VALUE or --name=VALUE):\n");
    for (int i = 0; i < spec->nopts; i++) print_opt(&spec->opts[i], f);
    fprintf(f, "  -h, --help            this help\n");
    if (spec->notes) fprintf(f, "\n%s", spec->notes);
}
