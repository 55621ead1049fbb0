/* CSV of numbers: fields separated by commas (spaces and tabs around them
 * ignored), lines ended by '\n' or "\r\n", an optional header line of names.
 * A field may be wrapped in double quotes ("" inside stands for one quote),
 * which lets header names hold commas. Every row must have as many fields as
 * the first; empty lines at the end are ignored, elsewhere they are errors.
 * Numbers are read with strtod (so the C locale's '.' is the decimal point). */
#include "io_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct csv_state {
    const char *name;
    const unsigned char *p, *end;
    int64_t line; /* 1-based number of the current line */
    char *field;  /* the current field's text, NUL-terminated */
    size_t field_len, field_cap;
} csv_state;

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Whether the line starting at p holds only blanks (and ends there). */
static int line_is_empty(const unsigned char *p, const unsigned char *end)
{
    while (p < end && is_blank(*p))
        p++;
    if (p < end && *p == '\r') p++;
    return p == end || *p == '\n';
}

static nb_status field_push(csv_state *S, unsigned char c)
{
    if (S->field_len + 1 >= S->field_cap) {
        size_t ncap = S->field_cap ? S->field_cap * 2 : 64;
        char *nf = realloc(S->field, ncap);
        if (!nf) return nb_fail(NB_ERR_NOMEM, "%s: out of memory", S->name);
        S->field = nf;
        S->field_cap = ncap;
    }
    S->field[S->field_len++] = (char)c;
    S->field[S->field_len] = '\0';
    return NB_OK;
}

/* Reads one field into S->field. *last is set when the line ends after it.
 * col is 1-based, for messages. */
static nb_status csv_field(csv_state *S, int64_t col, int *last)
{
    S->field_len = 0;
    if (field_push(S, 'x')) return NB_ERR_NOMEM; /* make sure the buffer exists */
    S->field_len = 0;
    S->field[0] = '\0';
    while (S->p < S->end && is_blank(*S->p))
        S->p++;
    if (S->p < S->end && *S->p == '"') {
        S->p++;
        for (;;) {
            if (S->p >= S->end || *S->p == '\n')
                return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 ", column %" PRId64 ": unterminated quoted field",
                               S->name, S->line, col);
            if (*S->p == '"') {
                if (S->p + 1 < S->end && S->p[1] == '"') {
                    if (field_push(S, '"')) return NB_ERR_NOMEM;
                    S->p += 2;
                    continue;
                }
                S->p++;
                break;
            }
            if (field_push(S, *S->p++)) return NB_ERR_NOMEM;
        }
        while (S->p < S->end && is_blank(*S->p))
            S->p++;
        if (S->p < S->end && *S->p == '\r' && (S->p + 1 == S->end || S->p[1] == '\n')) S->p++;
        if (S->p < S->end && *S->p != ',' && *S->p != '\n')
            return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 ", column %" PRId64 ": text after a closing quote",
                           S->name, S->line, col);
    } else {
        while (S->p < S->end && *S->p != ',' && *S->p != '\n') {
            if (field_push(S, *S->p++)) return NB_ERR_NOMEM;
        }
        /* Trim trailing blanks and the '\r' of "\r\n". */
        size_t n = S->field_len;
        if (n > 0 && S->field[n - 1] == '\r' && (S->p == S->end || *S->p == '\n')) n--;
        while (n > 0 && is_blank((unsigned char)S->field[n - 1]))
            n--;
        S->field_len = n;
        S->field[n] = '\0';
    }
    if (S->p < S->end && *S->p == ',') {
        S->p++;
        *last = 0;
    } else {
        if (S->p < S->end) S->p++; /* '\n' */
        *last = 1;
    }
    return NB_OK;
}

/* Writes a field for a message, quoted, shortened and with unprintable bytes
 * shown as '?'. */
static const char *field_for_message(const char *f, size_t n, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        unsigned char c = (unsigned char)f[i];
        buf[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (k + 4 >= cap && n > k) {
        buf[k - 3] = buf[k - 2] = buf[k - 1] = '.';
    }
    buf[k] = '\0';
    return buf;
}

static nb_status csv_number(csv_state *S, int64_t col, nb_real *v)
{
    char shown[48];
    if (S->field_len == 0)
        return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 ", column %" PRId64 ": empty field is not a number", S->name,
                       S->line, col);
    char *endp;
    errno = 0;
    double d = strtod(S->field, &endp);
    /* The whole field must be the number (a NUL byte inside it stops strtod
     * early and so is refused too). Overflow to inf is refused; underflow to
     * a tiny value or zero is fine. */
    if (endp == S->field + S->field_len && errno == ERANGE && (d > 1.0 || d < -1.0))
        return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 ", column %" PRId64 ": '%s' is out of range", S->name,
                       S->line, col, field_for_message(S->field, S->field_len, shown, sizeof shown));
    if (endp != S->field + S->field_len || endp == S->field)
        return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 ", column %" PRId64 ": '%s' is not a number", S->name,
                       S->line, col, field_for_message(S->field, S->field_len, shown, sizeof shown));
    *v = (nb_real)d;
    return NB_OK;
}

static void free_names(char **names, int64_t n)
{
    if (!names) return;
    for (int64_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

void nb_csv_free_names(char **names, int64_t ncols)
{
    free_names(names, ncols);
}

/* The header line's fields as names (*names, *nnames of them; freed by the
 * caller even on failure). */
static nb_status csv_read_header(csv_state *S, char ***names, int64_t *nnames)
{
    int last = 0;
    size_t ncap = 0;
    while (!last) {
        nb_status s = csv_field(S, *nnames + 1, &last);
        if (s) return s;
        if ((size_t)*nnames == ncap) {
            ncap = ncap ? ncap * 2 : 8;
            char **nn = realloc(*names, ncap * sizeof **names);
            if (!nn) return nb_fail(NB_ERR_NOMEM, "%s: out of memory", S->name);
            *names = nn;
        }
        char *f = malloc(S->field_len + 1);
        if (!f) return nb_fail(NB_ERR_NOMEM, "%s: out of memory", S->name);
        memcpy(f, S->field, S->field_len + 1);
        (*names)[(*nnames)++] = f;
    }
    S->line++;
    return NB_OK;
}

/* At an empty line: fine when every line from here on is empty too. */
static nb_status csv_trailing_empty_lines(const csv_state *S)
{
    const unsigned char *q = S->p;
    while (q < S->end && line_is_empty(q, S->end)) {
        const unsigned char *nl = memchr(q, '\n', (size_t)(S->end - q));
        if (!nl) return NB_OK;
        q = nl + 1;
    }
    if (q < S->end) return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 " is empty", S->name, S->line);
    return NB_OK;
}

/* The values read so far, growing by doubling. */
typedef struct {
    nb_real *v;
    size_t n, cap;
} csv_values;

static nb_status csv_push(const csv_state *S, csv_values *vals, nb_real v)
{
    if (vals->n == vals->cap) {
        size_t ncap = vals->cap ? vals->cap * 2 : 256;
        if (ncap > SIZE_MAX / sizeof(nb_real)) return nb_fail(NB_ERR_TOO_LARGE, "%s: too many values", S->name);
        nb_real *nv = realloc(vals->v, ncap * sizeof *nv);
        if (!nv) return nb_fail(NB_ERR_NOMEM, "%s: out of memory", S->name);
        vals->v = nv;
        vals->cap = ncap;
    }
    vals->v[vals->n++] = v;
    return NB_OK;
}

/* One line of numbers into vals; *ncols is set by the first line (or the
 * header) and every other line must have as many fields. */
static nb_status csv_read_row(csv_state *S, int64_t *ncols, csv_values *vals)
{
    int last = 0;
    int64_t col = 0;
    nb_status s;
    while (!last) {
        col++;
        if ((s = csv_field(S, col, &last))) return s;
        if (*ncols >= 0 && col > *ncols) {
            /* Count the rest of the line for the message. */
            while (!last) {
                col++;
                if ((s = csv_field(S, col, &last))) return s;
            }
            break;
        }
        nb_real v = 0; /* set by csv_number; initialised for gcc -O3 -Wmaybe-uninitialized */
        if ((s = csv_number(S, col, &v)) || (s = csv_push(S, vals, v))) return s;
    }
    if (*ncols < 0) *ncols = col;
    if (col != *ncols)
        return nb_fail(NB_ERR_FORMAT, "%s: line %" PRId64 " has %" PRId64 " fields, expected %" PRId64, S->name,
                       S->line, col, *ncols);
    S->line++;
    return NB_OK;
}

static nb_status csv_parse_named(const char *name, const void *data, size_t len, int has_header, nb_tensor **out,
                                 char ***header_names)
{
    if (out) *out = NULL;
    if (header_names) *header_names = NULL;
    if (!out || (!data && len > 0)) return nb_fail(NB_ERR_ARG, "csv: NULL argument");
    csv_state S = {name, data, (const unsigned char *)data + len, 1, NULL, 0, 0};
    /* A UTF-8 byte-order mark is skipped. */
    if (len >= 3 && memcmp(S.p, "\xEF\xBB\xBF", 3) == 0) S.p += 3;
    nb_status s = NB_OK;
    char **names = NULL;
    int64_t ncols = -1, nnames = 0, rows = 0;
    csv_values vals = {0};
    if (has_header && S.p < S.end) {
        s = csv_read_header(&S, &names, &nnames);
        ncols = nnames;
    }
    while (!s && S.p < S.end) {
        if (line_is_empty(S.p, S.end)) {
            s = csv_trailing_empty_lines(&S);
            break;
        }
        if (!(s = csv_read_row(&S, &ncols, &vals))) rows++;
    }
    int64_t shape[2] = {rows, ncols < 0 ? 0 : ncols};
    nb_tensor *t = s ? NULL : nb_tensor_new(2, shape);
    if (!s && !t) s = nb_fail(NB_ERR_NOMEM, "%s: %s", name, nb_last_error());
    if (!s && vals.n) memcpy(t->data, vals.v, vals.n * sizeof *vals.v);
    free(vals.v);
    free(S.field);
    if (!s && header_names && has_header && names) *header_names = names;
    else free_names(names, nnames);
    if (!s) *out = t;
    return s;
}

nb_status nb_csv_parse(const void *data, size_t len, int has_header, nb_tensor **out, char ***header_names)
{
    return csv_parse_named(NB_MEMORY_NAME, data, len, has_header, out, header_names);
}

nb_status nb_csv_read(const char *path, int has_header, nb_tensor **out, char ***header_names)
{
    if (out) *out = NULL;
    if (header_names) *header_names = NULL;
    if (!path || !out) return nb_fail(NB_ERR_ARG, "csv_read: NULL argument");
    void *buf;
    size_t len;
    nb_status s = nb_read_file(path, 0, &buf, &len);
    if (s) return s;
    s = csv_parse_named(path, buf, len, has_header, out, header_names);
    free(buf);
    return s;
}
