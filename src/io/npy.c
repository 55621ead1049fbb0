/* NumPy .npy files, versions 1.0, 2.0 and 3.0:
 *   "\x93NUMPY" major minor, header length (uint16 LE for 1.x, uint32 LE for
 *   2.x and 3.x), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *   padded with spaces and ended by '\n', then the raw data in C order.
 * The dict is read by a small parser for the subset of Python literals that
 * NumPy writes (strings, True/False, tuples or lists of integers); nothing
 * is evaluated. */
#include "io_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct npy_lex {
    const char *name; /* file name for messages */
    const unsigned char *p, *end;
} npy_lex;

typedef struct npy_dtype {
    char descr[32];
    char kind; /* 'f', 'i', 'u', 'b' */
    int size;  /* bytes per element */
    int big;   /* big-endian data */
} npy_dtype;

static void lex_ws(npy_lex *L)
{
    while (L->p < L->end && (*L->p == ' ' || *L->p == '\t' || *L->p == '\n' || *L->p == '\r'))
        L->p++;
}

static int lex_peek(npy_lex *L)
{
    return L->p < L->end ? *L->p : -1;
}

/* A quoted string ('...' or "...") into buf; too long or unterminated fails. */
static nb_status lex_string(npy_lex *L, const char *what, char *buf, size_t cap)
{
    int q = lex_peek(L);
    if (q != '\'' && q != '"')
        return nb_fail(NB_ERR_FORMAT, "%s: header: expected a quoted string for %s", L->name, what);
    L->p++;
    size_t n = 0;
    while (L->p < L->end && *L->p != q) {
        unsigned char c = *L->p++;
        if (c == '\\') {
            if (L->p >= L->end) break;
            c = *L->p++;
        }
        if (c == '\n' || c == 0) return nb_fail(NB_ERR_FORMAT, "%s: header: bad character in %s", L->name, what);
        if (n + 1 >= cap) return nb_fail(NB_ERR_FORMAT, "%s: header: %s is too long", L->name, what);
        buf[n++] = (char)c;
    }
    if (L->p >= L->end) return nb_fail(NB_ERR_FORMAT, "%s: header: unterminated string in %s", L->name, what);
    L->p++;
    buf[n] = '\0';
    return NB_OK;
}

static int lex_word(npy_lex *L, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(L->end - L->p) < n || memcmp(L->p, w, n) != 0) return 0;
    /* The word must end there (no 'Trueish'). */
    if ((size_t)(L->end - L->p) > n) {
        unsigned char c = L->p[n];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') return 0;
    }
    L->p += n;
    return 1;
}

/* A tuple or list of non-negative integers: (), (3,), (2, 3), [2, 3]. */
static nb_status lex_shape(npy_lex *L, int *rank, int64_t *shape)
{
    int open = lex_peek(L);
    if (open != '(' && open != '[')
        return nb_fail(NB_ERR_FORMAT, "%s: header: field 'shape': expected a tuple of integers", L->name);
    int close = open == '(' ? ')' : ']';
    L->p++;
    *rank = 0;
    for (;;) {
        lex_ws(L);
        int c = lex_peek(L);
        if (c == close) {
            L->p++;
            return NB_OK;
        }
        if (c == '-') return nb_fail(NB_ERR_FORMAT, "%s: header: field 'shape': negative dimension", L->name);
        if (c < '0' || c > '9')
            return nb_fail(NB_ERR_FORMAT, "%s: header: field 'shape': expected an integer or '%c'", L->name, close);
        if (*rank >= NB_MAX_RANK)
            return nb_fail(NB_ERR_FORMAT, "%s: header: field 'shape': more than %d dimensions", L->name, NB_MAX_RANK);
        int64_t v = 0;
        while (L->p < L->end && *L->p >= '0' && *L->p <= '9') {
            int d = *L->p++ - '0';
            if (v > (INT64_MAX - d) / 10)
                return nb_fail(NB_ERR_FORMAT, "%s: header: field 'shape': a dimension overflows 64 bits", L->name);
            v = v * 10 + d;
        }
        if (lex_peek(L) == 'L' || lex_peek(L) == 'l') L->p++; /* Python 2 long */
        shape[(*rank)++] = v;
        lex_ws(L);
        c = lex_peek(L);
        if (c == ',') {
            L->p++;
        } else if (c != close) {
            return nb_fail(NB_ERR_FORMAT, "%s: header: field 'shape': expected ',' or '%c'", L->name, close);
        }
    }
}

static int host_is_big_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static nb_status npy_parse_descr(const char *name, const char *descr, npy_dtype *dt)
{
    size_t n = strlen(descr);
    snprintf(dt->descr, sizeof dt->descr, "%s", descr);
    const char *supported = "<f2 <f4 <f8 |u1 <u2 <u4 <u8 |i1 <i2 <i4 <i8 |b1, or '>' for big-endian";
    if (n < 3 || n > 4 || !strchr("<>|=", descr[0]) || !strchr("fiub", descr[1]))
        return nb_fail(NB_ERR_FORMAT, "%s: header: field 'descr': dtype '%s' is not supported (supported: %s)", name,
                       NB_QUOTED(descr), supported);
    int size = 0;
    for (size_t i = 2; i < n; i++) {
        if (descr[i] < '0' || descr[i] > '9') size = -1000;
        size = size * 10 + (descr[i] - '0');
    }
    char kind = descr[1];
    int ok = (kind == 'f' && (size == 2 || size == 4 || size == 8)) ||
             ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
             (kind == 'b' && size == 1);
    /* '|' (not applicable) only makes sense for one-byte types. */
    if (!ok || (descr[0] == '|' && size != 1))
        return nb_fail(NB_ERR_FORMAT, "%s: header: field 'descr': dtype '%s' is not supported (supported: %s)", name,
                       NB_QUOTED(descr), supported);
    dt->kind = kind;
    dt->size = size;
    dt->big = descr[0] == '>' || (descr[0] == '=' && host_is_big_endian());
    return NB_OK;
}

static uint64_t npy_load(const unsigned char *p, int size, int big)
{
    switch (size) {
    case 1: return p[0];
    case 2: return big ? nb_ld_be16(p) : nb_ld_le16(p);
    case 4: return big ? nb_ld_be32(p) : nb_ld_le32(p);
    default: return big ? nb_ld_be64(p) : nb_ld_le64(p);
    }
}

static void npy_convert(const npy_dtype *dt, const unsigned char *src, nb_real *dst, size_t count)
{
    const int sz = dt->size, big = dt->big;
    if (dt->kind == 'u' && sz == 1) {
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)src[i];
        return;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t u = npy_load(src + (size_t)sz * i, sz, big);
        nb_real v;
        switch (dt->kind) {
        case 'f':
            v = sz == 2   ? (nb_real)nb_f16_to_f32((uint16_t)u)
                : sz == 4 ? (nb_real)nb_bits_to_f32((uint32_t)u)
                          : (nb_real)nb_bits_to_f64(u);
            break;
        case 'i':
            v = sz == 1   ? (nb_real)(int8_t)u
                : sz == 2 ? (nb_real)(int16_t)u
                : sz == 4 ? (nb_real)(int32_t)u
                          : (nb_real)(int64_t)u;
            break;
        case 'u': v = (nb_real)u; break;
        default: v = u ? 1 : 0; break; /* 'b' */
        }
        dst[i] = v;
    }
}

/* Parses the header dict from [p, end). */
static nb_status npy_parse_dict(const char *name, const unsigned char *p, const unsigned char *end, npy_dtype *dt,
                                int *rank, int64_t *shape)
{
    npy_lex L = {name, p, end};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    lex_ws(&L);
    if (lex_peek(&L) != '{') return nb_fail(NB_ERR_FORMAT, "%s: header: expected a dict starting with '{'", name);
    L.p++;
    for (;;) {
        lex_ws(&L);
        if (lex_peek(&L) == '}') {
            L.p++;
            break;
        }
        char key[32];
        nb_status s = lex_string(&L, "a key", key, sizeof key);
        if (s) return s;
        lex_ws(&L);
        if (lex_peek(&L) != ':') return nb_fail(NB_ERR_FORMAT, "%s: header: expected ':' after key '%s'", name, NB_QUOTED(key));
        L.p++;
        lex_ws(&L);
        if (!strcmp(key, "descr")) {
            if (have_descr++) return nb_fail(NB_ERR_FORMAT, "%s: header: key 'descr' appears twice", name);
            if (lex_peek(&L) == '[')
                return nb_fail(NB_ERR_FORMAT, "%s: header: field 'descr': structured dtypes are not supported", name);
            char descr[32];
            if ((s = lex_string(&L, "field 'descr'", descr, sizeof descr))) return s;
            if ((s = npy_parse_descr(name, descr, dt))) return s;
        } else if (!strcmp(key, "fortran_order")) {
            if (have_fortran++) return nb_fail(NB_ERR_FORMAT, "%s: header: key 'fortran_order' appears twice", name);
            if (lex_word(&L, "True"))
                fortran = 1;
            else if (lex_word(&L, "False"))
                fortran = 0;
            else
                return nb_fail(NB_ERR_FORMAT, "%s: header: field 'fortran_order': expected True or False", name);
        } else if (!strcmp(key, "shape")) {
            if (have_shape++) return nb_fail(NB_ERR_FORMAT, "%s: header: key 'shape' appears twice", name);
            if ((s = lex_shape(&L, rank, shape))) return s;
        } else {
            return nb_fail(NB_ERR_FORMAT, "%s: header: unknown key '%s' (expected descr, fortran_order, shape)", name,
                           NB_QUOTED(key));
        }
        lex_ws(&L);
        if (lex_peek(&L) == ',') {
            L.p++;
        } else if (lex_peek(&L) != '}') {
            return nb_fail(NB_ERR_FORMAT, "%s: header: expected ',' or '}' after the value of '%s'", name, NB_QUOTED(key));
        }
    }
    lex_ws(&L);
    if (L.p != L.end) return nb_fail(NB_ERR_FORMAT, "%s: header: unexpected characters after the dict", name);
    if (!have_descr || !have_fortran || !have_shape)
        return nb_fail(NB_ERR_FORMAT, "%s: header: missing key '%s'", name,
                       !have_descr     ? "descr"
                       : !have_fortran ? "fortran_order"
                                       : "shape");
    if (fortran)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header: fortran_order is True: Fortran-order arrays are not supported "
                       "(save with np.ascontiguousarray(a))",
                       name);
    return NB_OK;
}

static nb_status npy_parse_named(const char *name, const void *data, size_t len, nb_tensor **out)
{
    if (out) *out = NULL;
    if (!out || (!data && len > 0)) return nb_fail(NB_ERR_ARG, "npy: NULL argument");
    const unsigned char *p = data;
    if (len < 8 || memcmp(p, "\x93NUMPY", 6) != 0)
        return nb_fail(NB_ERR_FORMAT, "%s: magic: not a .npy file (it does not start with \\x93NUMPY)", name);
    int major = p[6], minor = p[7];
    size_t hlen, hstart;
    if (major == 1) {
        if (len < 10) return nb_fail(NB_ERR_FORMAT, "%s: header length: the file ends after %zu bytes", name, len);
        hlen = nb_ld_le16(p + 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return nb_fail(NB_ERR_FORMAT, "%s: header length: the file ends after %zu bytes", name, len);
        hlen = nb_ld_le32(p + 8);
        hstart = 12;
    } else {
        return nb_fail(NB_ERR_FORMAT, "%s: version: %d.%d is not supported (1.0, 2.0, 3.0 are)", name, major, minor);
    }
    if (hlen > len - hstart)
        return nb_fail(NB_ERR_FORMAT, "%s: header length: %zu bytes, but only %zu follow", name, hlen, len - hstart);
    npy_dtype dt = {0};
    int rank = 0;
    int64_t shape[NB_MAX_RANK];
    nb_status s = npy_parse_dict(name, p + hstart, p + hstart + hlen, &dt, &rank, shape);
    if (s) return s;

    char sbuf[200];
    nb_shape_str(rank, shape, sbuf, sizeof sbuf);
    int64_t count = nb_shape_size(rank, shape);
    size_t bytes;
    if (count < 0 || (uint64_t)count > SIZE_MAX || !nb_mul_size((size_t)count, (size_t)dt.size, &bytes))
        return nb_fail(NB_ERR_FORMAT, "%s: header: shape %s of %s has too many elements", name, sbuf, dt.descr);
    size_t avail = len - hstart - hlen;
    /* Trailing bytes are allowed (np.save can append several arrays to one
     * file; np.load reads the first), missing ones are not. */
    if (bytes > avail)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header says shape %s of %s = %zu bytes, but the file holds %zu bytes of data", name, sbuf,
                       dt.descr, bytes, avail);
    nb_tensor *t = nb_tensor_new(rank, shape);
    if (!t) return nb_fail(NB_ERR_NOMEM, "%s: %s", name, nb_last_error());
    npy_convert(&dt, p + hstart + hlen, t->data, (size_t)count);
    *out = t;
    return NB_OK;
}

nb_status nb_npy_parse(const void *data, size_t len, nb_tensor **out)
{
    return npy_parse_named(NB_MEMORY_NAME, data, len, out);
}

nb_status nb_npy_read(const char *path, nb_tensor **out)
{
    if (out) *out = NULL;
    if (!path || !out) return nb_fail(NB_ERR_ARG, "npy_read: NULL argument");
    void *buf;
    size_t len;
    nb_status s = nb_read_file(path, 0, &buf, &len);
    if (s) return s;
    s = npy_parse_named(path, buf, len, out);
    free(buf);
    return s;
}

nb_status nb_npy_write(const char *path, const nb_tensor *t)
{
    if (!path || !t) return nb_fail(NB_ERR_ARG, "npy_write: NULL argument");
    if (t->rank < 0 || t->rank > NB_MAX_RANK || t->size < 0 || (t->size > 0 && !t->data))
        return nb_fail(NB_ERR_ARG, "npy_write: malformed tensor");
    char sbuf[200];
    nb_shape_str(t->rank, t->shape, sbuf, sizeof sbuf);
    const int esize = (int)sizeof(nb_real);
    char dict[320];
    int dn = snprintf(dict, sizeof dict, "{'descr': '<f%d', 'fortran_order': False, 'shape': %s, }", esize, sbuf);
    if (dn < 0 || (size_t)dn >= sizeof dict) return nb_fail(NB_ERR_ARG, "npy_write: shape too long");
    /* Version 1.0: 10-byte preamble; pad with spaces so that the data starts
     * at a multiple of 64 bytes, and end the header with '\n'. */
    size_t hlen = (size_t)dn + 1;
    size_t total_hdr = (10 + hlen + 63) / 64 * 64;
    hlen = total_hdr - 10;
    size_t data_bytes;
    if (!nb_mul_size((size_t)t->size, (size_t)esize, &data_bytes) || data_bytes > SIZE_MAX - total_hdr)
        return nb_fail(NB_ERR_TOO_LARGE, "npy_write: '%s': tensor too large", path);
    unsigned char *buf = malloc(total_hdr + data_bytes);
    if (!buf) return nb_fail(NB_ERR_NOMEM, "npy_write: '%s': out of memory", path);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dn);
    memset(buf + 10 + dn, ' ', hlen - (size_t)dn - 1);
    buf[total_hdr - 1] = '\n';
    unsigned char *d = buf + total_hdr;
    for (int64_t i = 0; i < t->size; i++) {
        if (esize == 4)
            nb_st_le32(d + 4 * i, nb_f32_to_bits((float)t->data[i]));
        else
            nb_st_le64(d + 8 * i, nb_f64_to_bits((double)t->data[i]));
    }
    nb_status s = nb_write_file_atomic(path, buf, total_hdr + data_bytes);
    free(buf);
    return s;
}
