/* Data sets from CSV files, as the CLI reads them: the label column by
 * index or by name, a header line given, refused or detected (and what was
 * decided said on stderr), pixels scaled by --scale, and a warning when the
 * inputs look like raw 0..255 pixels. */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the text s..s+n (trimmed, unquoted) is a number. */
static int field_is_number(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') s++, n -= 2;
    if (!n || n > 63) return 0;
    char buf[64], *end;
    memcpy(buf, s, n);
    buf[n] = '\0';
    strtod(buf, &end);
    return *end == '\0';
}

/* The first line of path into line (at most n - 1 bytes); 0 if unreadable. */
static int first_line(const char *path, char *line, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(line, (int)n, f) != NULL;
    fclose(f);
    if (ok) line[strcspn(line, "\r\n")] = '\0';
    return ok;
}

/* A header line has a field that is not a number. */
static int looks_like_header(const char *line)
{
    for (const char *p = line;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (!field_is_number(p, n)) return 1;
        if (!comma) return 0;
        p = comma + 1;
    }
}

/* --label-col as an index (negative from the end) or a header name. */
static nb_status label_index(const char *path, const char *text, char **names, int64_t cols, int64_t *lc)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (*text && !*end) {
        *lc = v < 0 ? cols + v : v;
        if (cols < 2 || *lc < 0 || *lc >= cols)
            return nb_set_error(NB_ERR_ARG, "'%s': --label-col %s: there is no such column (%lld columns, 0..%lld)",
                                path, text, (long long)cols, (long long)cols - 1);
        return NB_OK;
    }
    if (!names)
        return nb_set_error(NB_ERR_ARG, "'%s': --label-col '%s': the file has no header line to find the name in "
                                        "(give the column's index)", path, text);
    for (int64_t c = 0; c < cols; c++)
        if (!strcmp(names[c], text)) return *lc = c, NB_OK;
    const char *guess = cli_did_you_mean(text, (const char *const *)names, cols > 1000 ? 1000 : (int)cols);
    char list[256] = "";
    size_t u = 0;
    for (int64_t c = 0; c < cols && c < 4 && u < sizeof list; c++)
        u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", c ? ", " : "", names[c]);
    if (cols > 4 && u < sizeof list) snprintf(list + u, sizeof list - u, ", ... (%lld in all)", (long long)cols);
    return nb_set_error(NB_ERR_ARG, "'%s': --label-col '%s': no column of that name%s%s%s (the columns: %s)", path,
                        text, guess ? "; did you mean '" : "", guess ? guess : "", guess ? "'?" : "", list);
}

/* The header decision: --header, --no-header, or from the first line. */
static int has_header(const char *path, const cli_csv_opts *o)
{
    if (o->header) return 1;
    if (o->no_header) return 0;
    static char line[1 << 16];
    int header = first_line(path, line, sizeof line) ? looks_like_header(line) : 1;
    fprintf(stderr, "nabla: '%s': %s (pass %s if not)\n", path,
            header ? "the first line is a header (it holds a field that is not a number)"
                   : "no header line (the first line is all numbers): it is data",
            header ? "--no-header" : "--header");
    return header;
}

/* Divides the inputs by --scale, or warns when they look like 0..255. */
static void scale_inputs(const char *path, const cli_csv_opts *o, nb_tensor *x)
{
    if (o->scale > 0) {
        for (int64_t i = 0; i < x->size; i++) x->data[i] = (nb_real)(x->data[i] / o->scale);
        return;
    }
    double mx = 0;
    int integers = 1;
    for (int64_t i = 0; i < x->size; i++) {
        mx = fmax(mx, (double)x->data[i]);
        integers &= x->data[i] == floor(x->data[i]);
    }
    if (integers && mx > 25 && mx <= 255) /* not small counts or class-like codes */
        fprintf(stderr, "nabla: warning: the inputs of '%s' are whole numbers up to %g, like 0..255 pixels: pass "
                        "--scale 255 to divide them by 255 (networks train badly on unscaled pixels)\n",
                path, mx);
}

nb_status cli_load_csv(const char *path, const cli_csv_opts *o, nb_dataset *out)
{
    static const cli_csv_opts defaults = {"-1", 0, 0, 0};
    if (!o) o = &defaults;
    *out = (nb_dataset){0};
    if (!cli_is_file(path)) return nb_set_error(NB_ERR_IO, "data '%s': no such file", path);
    nb_tensor *t = NULL;
    char **names = NULL;
    const int header = has_header(path, o);
    nb_status s = nb_csv_read(path, header, &t, &names);
    if (s) return s;
    const int64_t rows = t->shape[0], cols = t->shape[1];
    int64_t lc = 0;
    s = label_index(path, o->label_col ? o->label_col : "-1", names, cols, &lc);
    nb_csv_free_names(names, cols);
    int64_t xs[2] = {rows, cols - 1}, ys[1] = {rows};
    if (!s && (!(out->x = nb_tensor_new(2, xs)) || !(out->y = nb_tensor_new(1, ys))))
        s = nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; !s && r < rows; r++)
        for (int64_t c = 0, k = 0; c < cols; c++) {
            nb_real v = t->data[r * cols + c];
            if (c == lc) out->y->data[r] = v;
            else out->x->data[r * (cols - 1) + k++] = v;
        }
    nb_tensor_free(t);
    if (s) {
        nb_dataset_free(out);
        return s;
    }
    scale_inputs(path, o, out->x);
    return NB_OK;
}
