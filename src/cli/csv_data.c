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
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') s++, n -= 2;
    if (!n || n > 63) return 0;
    char buf[64], *end;
    memcpy(buf, s, n);
    buf[n] = '\0';
    strtod(buf, &end);
    return *end == '\0';
}

/* A UTF-8 byte-order mark, which may open a file (nb_csv_parse skips it). */
#define UTF8_BOM "\xEF\xBB\xBF"

/* The first two lines of path into l1 and l2 (at most n - 1 bytes each; l2
 * empty when there is none); 0 if unreadable. */
static int first_lines(const char *path, char *l1, char *l2, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(l1, (int)n, f) != NULL;
    if (!ok || !fgets(l2, (int)n, f)) l2[0] = '\0';
    fclose(f);
    l1[strcspn(l1, "\r\n")] = '\0', l2[strcspn(l2, "\r\n")] = '\0';
    if (!strncmp(l1, UTF8_BOM, 3)) memmove(l1, l1 + 3, strlen(l1 + 3) + 1); /* no text field: the parser skips it */
    return ok;
}

/* The span of the field after *p on a line (quotes respected); *p moves past
 * its comma. 0 when the line has ended. */
static int next_field(const char **p, const char **start, size_t *len)
{
    const char *q = *p;
    if (!q) return 0;
    int quoted = 0;
    *start = q;
    while (*q && (quoted || *q != ','))
        quoted ^= *q++ == '"';
    *len = (size_t)(q - *start);
    *p = *q == ',' ? q + 1 : NULL;
    return 1;
}

/* A header line has a field that is not a number where the second line
 * holds one (or, for a file of one line, any field that is not a number): a
 * first line of data with a string label stays data. */
static int looks_like_header(const char *l1, const char *l2)
{
    const char *p = l1, *q = *l2 ? l2 : NULL, *a, *b;
    size_t na, nb;
    while (next_field(&p, &a, &na)) {
        const int second = next_field(&q, &b, &nb);
        if (!field_is_number(a, na) && (!second || field_is_number(b, nb))) return 1;
    }
    return 0;
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
        return nb_set_error(NB_ERR_ARG,
                            "'%s': --label-col '%s': the file has no header line to find the name in "
                            "(give the column's index)",
                            path, text);
    for (int64_t c = 0; c < cols; c++)
        if (!strcmp(names[c], text)) return *lc = c, NB_OK;
    const char *guess = cli_did_you_mean(text, (const char *const *)names, cols > 1000 ? 1000 : (int)cols);
    char list[256] = "", shown[64], guessed[64];
    size_t u = 0;
    for (int64_t c = 0; c < cols && c < 4 && u < sizeof list; c++)
        u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", c ? ", " : "",
                              nb_escape_text(shown, sizeof shown, names[c], SIZE_MAX));
    if (cols > 4 && u < sizeof list) snprintf(list + u, sizeof list - u, ", ... (%lld in all)", (long long)cols);
    return nb_set_error(NB_ERR_ARG, "'%s': --label-col '%s': no column of that name%s%s%s (the columns: %s)", path,
                        text, guess ? "; did you mean '" : "",
                        guess ? nb_escape_text(guessed, sizeof guessed, guess, SIZE_MAX) : "", guess ? "'?" : "", list);
}

/* The header decision: --header, --no-header, or from the first line. */
static int has_header(const char *path, const cli_csv_opts *o)
{
    if (o->header) return 1;
    if (o->no_header) return 0;
    static char l1[1 << 16], l2[1 << 16];
    int header = first_lines(path, l1, l2, sizeof l1) ? looks_like_header(l1, l2) : 1;
    fprintf(stderr, "nabla: '%s': %s (pass %s if not)\n", path,
            header                      ? "the first line is a header (it holds a field that is not a number)"
            : looks_like_header(l1, "") ? "no header line (its text fields stand where the next line's do: labels): "
                                          "it is data"
                                        : "no header line (the first line is all numbers): it is data",
            header ? "--no-header" : "--header");
    return header;
}

/* Divides the inputs by --scale, or warns when they look like 0..255. */
static void scale_inputs(const char *path, const cli_csv_opts *o, nb_tensor *x)
{
    if (o->scale > 0) {
        for (int64_t i = 0; i < x->size; i++)
            x->data[i] = (nb_real)(x->data[i] / o->scale);
        return;
    }
    double mx = 0;
    int integers = 1;
    for (int64_t i = 0; i < x->size; i++) {
        mx = fmax(mx, (double)x->data[i]);
        integers &= x->data[i] == floor(x->data[i]);
    }
    if (integers && mx > 25 && mx <= 255) /* not small counts or class-like codes */
        fprintf(stderr,
                "nabla: warning: the inputs of '%s' are whole numbers up to %g, like 0..255 pixels: pass "
                "--scale 255 to divide them by 255 (networks train badly on unscaled pixels)\n",
                path, mx);
}

/* The field text a..a+n trimmed of blanks and one pair of quotes, copied;
 * inside the quotes "" stands for one quote (RFC 4180). */
static char *field_copy(const char *a, size_t n)
{
    while (n && isspace((unsigned char)*a))
        a++, n--;
    while (n && isspace((unsigned char)a[n - 1]))
        n--;
    const int quoted = n >= 2 && a[0] == '"' && a[n - 1] == '"';
    if (quoted) a++, n -= 2;
    char *c = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; c && i < n; i++) {
        c[k++] = a[i];
        if (quoted && a[i] == '"' && i + 1 < n && a[i + 1] == '"') i++;
    }
    if (c) c[k] = '\0';
    return c;
}

/* String labels: a CSV text's lines and the label of each data line. */
typedef struct {
    char **lines; /* in place in the text */
    int64_t nlines;
    char **label; /* per line (NULL: header, empty or short line) */
    int strings;  /* some label is not a number */
} csv_labels;

static void csv_labels_free(csv_labels *L)
{
    for (int64_t i = 0; L->label && i < L->nlines; i++)
        free(L->label[i]);
    free(L->label), free(L->lines);
    *L = (csv_labels){0};
}

/* Splits text into lines and reads field lc of every data line. */
static nb_status read_labels(const char *path, char *text, int header, int64_t lc, csv_labels *L)
{
    *L = (csv_labels){0};
    int64_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == '\n';
    L->lines = calloc((size_t)cap, sizeof *L->lines), L->label = calloc((size_t)cap, sizeof *L->label);
    if (!L->lines || !L->label) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (char *p = text; p && *p;) {
        char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
        if (nl) *nl = '\0';
        if (end > p && end[-1] == '\r') end[-1] = '\0';
        const int64_t i = L->nlines++;
        L->lines[i] = p;
        p = nl ? nl + 1 : NULL;
        if (i == 0 && header) continue;
        const char *q = L->lines[i], *a = NULL;
        size_t n = 0;
        int64_t c = 0;
        int reached = 0; /* field lc of this line itself, never the last field of a shorter one */
        while (!reached && next_field(&q, &a, &n))
            reached = c++ == lc;
        if (!reached || !*L->lines[i]) continue; /* short or empty lines: the parser names them */
        size_t quotes = 0;
        for (size_t j = 0; j < n; j++) quotes += a[j] == '"';
        if (quotes % 2) /* as the parser says of one (src/io/csv.c); a name would keep the quote */
            return nb_set_error(NB_ERR_FORMAT, "%s: line %lld, column %lld: unterminated quoted field", path,
                                (long long)i + 1, (long long)lc + 1);
        if (!(L->label[i] = field_copy(a, n))) return nb_set_error(NB_ERR_NOMEM, "out of memory");
        L->strings |= !field_is_number(a, n);
    }
    return NB_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The class names: the model's (known, '\n'-joined), or the labels' own,
 * sorted and unique. *names points into *store (free both). */
static nb_status class_list(const char *path, const csv_labels *L, const char *known, char ***names, int64_t *n,
                            char **store)
{
    *names = NULL, *n = 0;
    if (known) {
        if (!(*store = malloc(strlen(known) + 1))) return nb_set_error(NB_ERR_NOMEM, "out of memory");
        strcpy(*store, known);
        int64_t cap = 1;
        for (const char *p = known; *p; p++)
            cap += *p == '\n';
        if (!(*names = malloc((size_t)cap * sizeof **names))) return nb_set_error(NB_ERR_NOMEM, "out of memory");
        for (char *p = *store; p; (*n)++) {
            (*names)[*n] = p;
            if ((p = strchr(p, '\n'))) *p++ = '\0';
        }
        return NB_OK;
    }
    *store = NULL;
    if (!(*names = malloc((size_t)(L->nlines ? L->nlines : 1) * sizeof **names)))
        return nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < L->nlines; i++)
        if (L->label[i]) {
            if (!*L->label[i])
                return nb_set_error(NB_ERR_FORMAT, "'%s': line %lld: the label is empty (the labels are names here)",
                                    path, (long long)i + 1);
            (*names)[(*n)++] = L->label[i];
        }
    qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    int64_t u = 0;
    for (int64_t i = 0; i < *n; i++)
        if (!u || strcmp((*names)[u - 1], (*names)[i])) (*names)[u++] = (*names)[i];
    *n = u;
    return NB_OK;
}

/* "0 cat, 1 dog, ..." (the first 12) on stderr. */
static void say_classes(const char *path, char **names, int64_t n, int known)
{
    fprintf(stderr, "nabla: '%s': the labels are names: %s%lld classes%s:", path, known ? "the model's " : "",
            (long long)n, known ? " (from its file)" : ", numbered in sorted order");
    char shown[132];
    for (int64_t c = 0; c < n && c < 12; c++)
        fprintf(stderr, "%s %lld %s", c ? "," : "", (long long)c, nb_escape_text(shown, sizeof shown, names[c], SIZE_MAX));
    fprintf(stderr, "%s\n", n > 12 ? ", ..." : "");
}

/* The text with every label replaced by its class index (*mapped, NULL
 * when the labels are numbers) and the names joined by '\n' (*classes). */
static nb_status map_labels(const char *path, char *text, int header, int64_t lc, const char *known, char **mapped,
                            char **classes)
{
    csv_labels L;
    char **names = NULL, *store = NULL;
    int64_t n = 0;
    nb_status s = read_labels(path, text, header, lc, &L);
    *mapped = *classes = NULL;
    if (!s && L.strings) s = class_list(path, &L, known, &names, &n, &store);
    size_t total = 1;
    for (int64_t i = 0; !s && L.strings && i < L.nlines; i++)
        total += strlen(L.lines[i]) + 24;
    for (int64_t c = 0; !s && L.strings && c < n; c++)
        total += strlen(names[c]) + 1;
    if (!s && L.strings && (!(*mapped = malloc(total)) || !(*classes = malloc(total))))
        s = nb_set_error(NB_ERR_NOMEM, "out of memory");
    size_t u = 0, k = 0;
    for (int64_t i = 0; !s && *mapped && i < L.nlines; i++) {
        int64_t c = -1, f = 0;
        if (L.label[i]) {
            char **hit = known ? NULL : bsearch(&L.label[i], names, (size_t)n, sizeof *names, cmp_str);
            for (int64_t j = 0; known && !hit && j < n; j++)
                hit = strcmp(names[j], L.label[i]) ? NULL : &names[j];
            char shown[132];
            if (!hit)
                s = nb_set_error(NB_ERR_ARG, "'%s': line %lld: label '%s' is not one of the model's %lld classes", path,
                                 (long long)i + 1, nb_escape_text(shown, sizeof shown, L.label[i], SIZE_MAX),
                                 (long long)n);
            c = hit ? hit - names : -1;
        }
        const char *q = L.lines[i], *a;
        size_t len;
        while (!s && next_field(&q, &a, &len)) {
            if (f) (*mapped)[u++] = ',';
            if (f++ == lc && c >= 0)
                u += (size_t)snprintf(*mapped + u, total - u, "%lld", (long long)c);
            else
                memcpy(*mapped + u, a, len), u += len;
        }
        (*mapped)[u++] = '\n';
    }
    if (*mapped) (*mapped)[u] = '\0';
    for (int64_t c = 0; !s && *classes && c < n; c++)
        k += (size_t)snprintf(*classes + k, total - k, "%s%s", c ? "\n" : "", names[c]);
    if (!s && *mapped) say_classes(path, names, n, known != NULL);
    if (s) free(*mapped), free(*classes), *mapped = *classes = NULL;
    free(names), free(store);
    csv_labels_free(&L);
    return s;
}

/* The names of the header line (header) and the number of fields of the
 * first line. */
static nb_status header_names(const char *text, int header, char ***names, int64_t *cols)
{
    const char *end = strchr(text, '\n'), *p, *a;
    size_t n, len = end ? (size_t)(end - text) : strlen(text);
    char *line = malloc(len + 1);
    if (!line) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    memcpy(line, text, len), line[len] = '\0';
    if (len && line[len - 1] == '\r') line[len - 1] = '\0';
    *cols = 0, *names = NULL;
    for (p = line; next_field(&p, &a, &n);)
        ++*cols;
    if (header && !(*names = calloc((size_t)(*cols ? *cols : 1), sizeof **names))) *cols = -1;
    int64_t c = 0;
    for (p = line; header && *names && next_field(&p, &a, &n); c++)
        if (!((*names)[c] = field_copy(a, n))) *cols = -1;
    free(line);
    if (*cols < 0) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    return NB_OK;
}

/* The numbers of a CSV file, its string labels (if any) turned into class
 * indices first. */
static nb_status read_csv_mapped(const char *path, const cli_csv_opts *o, int header, nb_tensor **t, int64_t *lc,
                                 char **classes)
{
    void *buf;
    size_t len;
    nb_status s = nb_read_file(path, 0, &buf, &len);
    if (s) return s;
    char *text = malloc(len + 1), *mapped = NULL, **names = NULL;
    if (!text) {
        free(buf);
        return nb_set_error(NB_ERR_NOMEM, "out of memory");
    }
    const size_t bom = len >= 3 && !memcmp(buf, UTF8_BOM, 3) ? 3 : 0; /* else the first header name holds it */
    memcpy(text, (const char *)buf + bom, len - bom), text[len - bom] = '\0';
    free(buf);
    /* The label pass reads C strings: a NUL would end the file there and
     * drop every row after it without a word. */
    const char *nul = memchr(text, 0, len - bom);
    if (nul) {
        int64_t line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        free(text);
        return nb_set_error(NB_ERR_FORMAT, "%s: line %lld holds a NUL byte: a CSV file is text; remove it", path,
                            (long long)line);
    }
    int64_t cols = 0;
    s = header_names(text, header, &names, &cols);
    if (!s) s = label_index(path, o->label_col ? o->label_col : "-1", names, cols, lc);
    if (!s) s = map_labels(path, text, header, *lc, o->classes, &mapped, classes);
    nb_csv_free_names(names, cols);
    free(text);
    if (!s && !mapped) return nb_csv_read(path, header, t, NULL);
    if (!s && (s = nb_csv_parse(mapped, strlen(mapped), header, t, NULL))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        const size_t k = strlen("<memory>");
        nb_set_error(s, "%s%s", path, strncmp(msg, "<memory>", k) ? msg : msg + k);
    }
    free(mapped);
    if (s) free(*classes), *classes = NULL;
    return s;
}

nb_status cli_load_csv(const char *path, const cli_csv_opts *o, nb_dataset *out)
{
    return cli_load_csv_classes(path, o, out, NULL);
}

nb_status cli_load_csv_classes(const char *path, const cli_csv_opts *o, nb_dataset *out, char **classes_out)
{
    static const cli_csv_opts defaults = {.label_col = "-1"};
    if (!o) o = &defaults;
    *out = (nb_dataset){0};
    if (classes_out) *classes_out = NULL;
    if (!cli_is_file(path)) return nb_set_error(NB_ERR_IO, "data '%s': no such file", path);
    nb_tensor *t = NULL;
    char *classes = NULL;
    const int header = has_header(path, o);
    int64_t lc = 0;
    nb_status s = read_csv_mapped(path, o, header, &t, &lc, &classes);
    if (s) return s;
    const int64_t rows = t->shape[0], cols = t->shape[1];
    if (classes_out)
        *classes_out = classes;
    else
        free(classes);
    int64_t xs[2] = {rows, cols - 1}, ys[1] = {rows};
    if (!s && (!(out->x = nb_tensor_new(2, xs)) || !(out->y = nb_tensor_new(1, ys))))
        s = nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; !s && r < rows; r++)
        for (int64_t c = 0, k = 0; c < cols; c++) {
            nb_real v = t->data[r * cols + c];
            if (c == lc)
                out->y->data[r] = v;
            else
                out->x->data[r * (cols - 1) + k++] = v;
        }
    nb_tensor_free(t);
    if (s) {
        nb_dataset_free(out);
        if (classes_out) free(*classes_out), *classes_out = NULL;
        return s;
    }
    scale_inputs(path, o, out->x);
    return NB_OK;
}

/* --data circles|xor|spiral|gaussians: the train split drawn with
 * --data-seed S, the test split with S + 2^32 (another draw); --count
 * points (default 1000 train, 500 test). */
nb_status cli_load_toy(nb_toy_kind kind, const char *split, const cli_csv_opts *o, nb_dataset *out)
{
    static const cli_csv_opts defaults = {.noise = 0.1, .data_seed = 1, .toy_classes = 2};
    if (!o) o = &defaults;
    const int test = split && !strcmp(split, "test");
    nb_toy_opts t = {kind,
                     o->toy_count ? o->toy_count
                     : test       ? 500
                                  : 1000,
                     o->noise, (uint64_t)o->data_seed + (test ? 1ull << 32 : 0), (int)o->toy_classes};
    return nb_dataset_toy(&t, out);
}
