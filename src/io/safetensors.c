/* safetensors: an 8-byte little-endian header length N, a JSON header of N
 * bytes, then the data. The header maps each tensor name to
 *   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
 * with offsets relative to the first byte after the header, plus an optional
 * "__metadata__" map of strings to strings.
 *
 * Reading validates the whole header before allocating any tensor: known
 * dtype, rank <= 8, integral non-negative dims, size = product * dtype size
 * without overflow, begin <= end <= data length, no two tensors overlapping,
 * no duplicate names. So the memory a file can make us allocate is bounded
 * by a small multiple of its length. */
#include "io_internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB */
#define ST_MAX_NAME 255
#define ST_MAX_DEPTH 16          /* JSON nesting: a valid header needs 3 */
#define ST_MAX_VALUES (1 << 22)  /* JSON values in the header (~64 bytes each in cJSON) */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

typedef struct st_entry {
    char *name;
    nb_tensor *t;
    const char *dtype; /* the file's dtype name (st_dtypes); NULL when added in memory */
} st_entry;

typedef struct st_meta {
    char *key, *value;
} st_meta;

struct nb_safetensors {
    st_entry *e;
    int n, cap;
    st_meta *m;
    int nm, mcap;
};

typedef enum {
    ST_F64,
    ST_F32,
    ST_F16,
    ST_BF16,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U64,
    ST_U32,
    ST_U16,
    ST_U8,
    ST_BOOL
} st_dtype;

static const struct {
    const char *name;
    st_dtype dt;
    int size;
} st_dtypes[] = {
    {"F64", ST_F64, 8}, {"F32", ST_F32, 4}, {"F16", ST_F16, 2},   {"BF16", ST_BF16, 2}, {"I64", ST_I64, 8},
    {"I32", ST_I32, 4}, {"I16", ST_I16, 2}, {"I8", ST_I8, 1},     {"U64", ST_U64, 8},   {"U32", ST_U32, 4},
    {"U16", ST_U16, 2}, {"U8", ST_U8, 1},   {"BOOL", ST_BOOL, 1},
};

static const char *st_dtype_name(st_dtype dt)
{
    for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
        if (st_dtypes[k].dt == dt) return st_dtypes[k].name;
    return NULL;
}

/* ------------------------------------------------------------ the object */

nb_safetensors *nb_safetensors_new(void)
{
    nb_safetensors *st = calloc(1, sizeof *st);
    if (!st) nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
    return st;
}

void nb_safetensors_free(nb_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        free(st->e[i].name);
        nb_tensor_free(st->e[i].t);
    }
    for (int i = 0; i < st->nm; i++) {
        free(st->m[i].key);
        free(st->m[i].value);
    }
    free(st->e);
    free(st->m);
    free(st);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static int st_find(const nb_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->e[i].name, name)) return i;
    return -1;
}

/* Appends (name must be new); takes ownership of t (freed on failure). */
static nb_status st_append(nb_safetensors *st, const char *name, nb_tensor *t)
{
    if (st->n == st->cap) {
        if (st->cap > INT32_MAX / 4) {
            nb_tensor_free(t);
            return nb_fail(NB_ERR_TOO_LARGE, "safetensors: too many tensors");
        }
        int ncap = st->cap ? st->cap * 2 : 16;
        st_entry *ne = realloc(st->e, (size_t)ncap * sizeof *ne);
        if (!ne) {
            nb_tensor_free(t);
            return nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
        }
        st->e = ne;
        st->cap = ncap;
    }
    char *nm = dup_str(name);
    if (!nm) {
        nb_tensor_free(t);
        return nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
    }
    st->e[st->n].name = nm;
    st->e[st->n].t = t;
    st->e[st->n].dtype = NULL;
    st->n++;
    return NB_OK;
}

/* Adds or replaces; takes ownership of t. */
static nb_status st_put(nb_safetensors *st, const char *name, nb_tensor *t)
{
    int i = st_find(st, name);
    if (i >= 0) {
        nb_tensor_free(st->e[i].t);
        st->e[i].t = t;
        st->e[i].dtype = NULL;
        return NB_OK;
    }
    return st_append(st, name, t);
}

static nb_status check_name(const char *name)
{
    if (!name || !*name) return nb_fail(NB_ERR_ARG, "safetensors: empty tensor name");
    if (strlen(name) > ST_MAX_NAME)
        return nb_fail(NB_ERR_ARG, "safetensors: tensor name '%.40s...' is longer than %d characters", name,
                       ST_MAX_NAME);
    if (!strcmp(name, "__metadata__"))
        return nb_fail(NB_ERR_ARG, "safetensors: '__metadata__' is reserved and cannot name a tensor");
    return NB_OK;
}

nb_status nb_safetensors_add(nb_safetensors *st, const char *name, const nb_tensor *t)
{
    if (!st || !t) return nb_fail(NB_ERR_ARG, "safetensors_add: NULL argument");
    nb_status s = check_name(name);
    if (s) return s;
    nb_tensor *c = nb_tensor_clone(t);
    if (!c) return nb_fail(NB_ERR_NOMEM, "safetensors_add: '%s': %s", name, nb_last_error());
    return st_put(st, name, c);
}

/* Appends a metadata entry (key must be new). */
static nb_status meta_append(nb_safetensors *st, const char *key, const char *value)
{
    char *v = dup_str(value);
    if (!v) return nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
    if (st->nm == st->mcap) {
        if (st->mcap > INT32_MAX / 4) {
            free(v);
            return nb_fail(NB_ERR_TOO_LARGE, "safetensors: too many metadata entries");
        }
        int ncap = st->mcap ? st->mcap * 2 : 8;
        st_meta *nm = realloc(st->m, (size_t)ncap * sizeof *nm);
        if (!nm) {
            free(v);
            return nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
        }
        st->m = nm;
        st->mcap = ncap;
    }
    char *k = dup_str(key);
    if (!k) {
        free(v);
        return nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
    }
    st->m[st->nm].key = k;
    st->m[st->nm].value = v;
    st->nm++;
    return NB_OK;
}

nb_status nb_safetensors_set_meta(nb_safetensors *st, const char *key, const char *value)
{
    if (!st || !key || !value) return nb_fail(NB_ERR_ARG, "safetensors_set_meta: NULL argument");
    for (int i = 0; i < st->nm; i++) {
        if (!strcmp(st->m[i].key, key)) {
            char *v = dup_str(value);
            if (!v) return nb_fail(NB_ERR_NOMEM, "safetensors: out of memory");
            free(st->m[i].value);
            st->m[i].value = v;
            return NB_OK;
        }
    }
    return meta_append(st, key, value);
}

const char *nb_safetensors_meta(const nb_safetensors *st, const char *key)
{
    if (!st || !key) return NULL;
    for (int i = 0; i < st->nm; i++)
        if (!strcmp(st->m[i].key, key)) return st->m[i].value;
    return NULL;
}

const nb_tensor *nb_safetensors_get(const nb_safetensors *st, const char *name)
{
    if (!st || !name) return NULL;
    int i = st_find(st, name);
    return i >= 0 ? st->e[i].t : NULL;
}

int nb_safetensors_count(const nb_safetensors *st)
{
    return st ? st->n : 0;
}

const char *nb_safetensors_name(const nb_safetensors *st, int i)
{
    if (!st || i < 0 || i >= st->n) return NULL;
    return st->e[i].name;
}

const char *nb_safetensors_dtype(const nb_safetensors *st, int i)
{
    if (!st || i < 0 || i >= st->n) return NULL;
    return st->e[i].dtype;
}

/* ------------------------------------------------------------------ read */

static int cmp_meta_keys(const void *a, const void *b);

typedef struct st_desc {
    const char *name; /* points into the cJSON tree */
    st_dtype dt;
    int size;
    int rank;
    int64_t shape[NB_MAX_RANK];
    uint64_t begin, end;
} st_desc;

/* A JSON number that is an exact non-negative integer. */
static int json_uint(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT) || d != (double)(uint64_t)d) return 0;
    *v = (uint64_t)d;
    return 1;
}

static nb_status st_describe(const char *fname, const cJSON *item, size_t data_len, st_desc *d)
{
    const char *name = item->string;
    char shown[132]; /* the name as messages quote it (nb_escape_text) */
    nb_escape_text(shown, sizeof shown, name, SIZE_MAX);
    d->name = name;
    if (!*name) return nb_fail(NB_ERR_FORMAT, "%s: header: a tensor has an empty name", fname);
    if (strlen(name) > ST_MAX_NAME)
        return nb_fail(NB_ERR_FORMAT, "%s: header: tensor name '%s' is longer than %d characters", fname,
                       nb_escape_text(shown, 44, name, SIZE_MAX), ST_MAX_NAME);
    if (!cJSON_IsObject(item))
        return nb_fail(NB_ERR_FORMAT, "%s: header: tensor '%s': expected an object", fname, shown);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jd))
        return nb_fail(NB_ERR_FORMAT, "%s: header: tensor '%s': field 'dtype': missing or not a string", fname, shown);
    size_t k = 0, nd = sizeof st_dtypes / sizeof st_dtypes[0];
    while (k < nd && strcmp(st_dtypes[k].name, jd->valuestring))
        k++;
    char dt[48];
    if (k == nd)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header: tensor '%s': field 'dtype': '%.32s' is not supported "
                       "(F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL are)",
                       fname, shown, nb_escape_text(dt, sizeof dt, jd->valuestring, 32));
    d->dt = st_dtypes[k].dt;
    d->size = st_dtypes[k].size;
    if (!cJSON_IsArray(js))
        return nb_fail(NB_ERR_FORMAT, "%s: header: tensor '%s': field 'shape': missing or not a list", fname, shown);
    d->rank = 0;
    uint64_t count = 1;
    int overflow = 0;
    for (const cJSON *c = js->child; c; c = c->next) {
        if (d->rank >= NB_MAX_RANK)
            return nb_fail(NB_ERR_FORMAT, "%s: header: tensor '%s': field 'shape': more than %d dimensions", fname,
                           shown, NB_MAX_RANK);
        uint64_t v;
        if (!json_uint(c, &v))
            return nb_fail(NB_ERR_FORMAT,
                           "%s: header: tensor '%s': field 'shape': dimension %d is not a non-negative integer", fname,
                           shown, d->rank);
        d->shape[d->rank++] = (int64_t)v;
        if (v != 0 && count > UINT64_MAX / v)
            overflow = 1;
        else
            count *= v;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &d->begin) ||
        !json_uint(jo->child->next, &d->end))
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header: tensor '%s': field 'data_offsets': expected [begin, end] of non-negative integers",
                       fname, shown);
    char sbuf[200];
    nb_shape_str(d->rank, d->shape, sbuf, sizeof sbuf);
    if (overflow || count > (uint64_t)INT64_MAX || count > UINT64_MAX / (uint64_t)d->size)
        return nb_fail(NB_ERR_FORMAT, "%s: header: tensor '%s': field 'shape': %s has too many elements", fname, shown,
                       sbuf);
    if (d->begin > d->end)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header: tensor '%s': field 'data_offsets': begin %" PRIu64 " is after end %" PRIu64, fname,
                       shown, d->begin, d->end);
    if (d->end > data_len)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header: tensor '%s': field 'data_offsets': end %" PRIu64
                       " is past the end of the data (%zu bytes)",
                       fname, shown, d->end, data_len);
    uint64_t bytes = count * (uint64_t)d->size;
    if (bytes != d->end - d->begin)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: header: tensor '%s': shape %s of %s = %" PRIu64 " bytes, but data_offsets [%" PRIu64
                       ", %" PRIu64 "] span %" PRIu64 " bytes",
                       fname, shown, sbuf, st_dtypes[k].name, bytes, d->begin, d->end, d->end - d->begin);
    if (count > (uint64_t)(SIZE_MAX / sizeof(nb_real)))
        return nb_fail(NB_ERR_FORMAT, "%s: header: tensor '%s': %s is too large for memory", fname, shown, sbuf);
    return NB_OK;
}

static int cmp_desc_offsets(const void *a, const void *b)
{
    const st_desc *x = *(const st_desc *const *)a, *y = *(const st_desc *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_desc_names(const void *a, const void *b)
{
    const st_desc *x = *(const st_desc *const *)a, *y = *(const st_desc *const *)b;
    return strcmp(x->name, y->name);
}

static void st_convert(const st_desc *d, const unsigned char *src, nb_real *dst, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const unsigned char *q = src + (size_t)d->size * i;
        nb_real v;
        switch (d->dt) {
        case ST_F64: v = (nb_real)nb_bits_to_f64(nb_ld_le64(q)); break;
        case ST_F32: v = (nb_real)nb_bits_to_f32(nb_ld_le32(q)); break;
        case ST_F16: v = (nb_real)nb_f16_to_f32(nb_ld_le16(q)); break;
        case ST_BF16: v = (nb_real)nb_bf16_to_f32(nb_ld_le16(q)); break;
        case ST_I64: v = (nb_real)(int64_t)nb_ld_le64(q); break;
        case ST_I32: v = (nb_real)(int32_t)nb_ld_le32(q); break;
        case ST_I16: v = (nb_real)(int16_t)nb_ld_le16(q); break;
        case ST_I8: v = (nb_real)(int8_t)q[0]; break;
        case ST_U64: v = (nb_real)nb_ld_le64(q); break;
        case ST_U32: v = (nb_real)nb_ld_le32(q); break;
        case ST_U16: v = (nb_real)nb_ld_le16(q); break;
        case ST_U8: v = (nb_real)q[0]; break;
        default: v = q[0] ? 1 : 0; break; /* BOOL */
        }
        dst[i] = v;
    }
}

/* Bounds what cJSON may build before it builds anything: the nesting depth
 * (a valid header needs 3: the root, a tensor, its shape) and the number of
 * JSON values (each costs cJSON about 64 bytes, so "[0,0,0,..." could
 * otherwise cost 30 times the header's size). A scan of the bytes outside
 * strings; the parse itself still validates everything. Inside strings, a
 * NUL (raw or \u0000) is refused: cJSON's C strings end there, so a tensor
 * name or a metadata value such as nabla.gemm would lose its rest silently. */
static nb_status st_prescan(const char *fname, const char *h, size_t n)
{
    int depth = 0, in_str = 0;
    uint64_t values = 1;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (in_str) {
            const int nul = c == '\0' || (c == '\\' && i + 5 < n && !memcmp(h + i + 1, "u0000", 5));
            if (nul)
                return nb_fail(NB_ERR_FORMAT,
                               "%s: header: a string holds a NUL byte (%s) at byte %zu of the header: names and "
                               "metadata end at a NUL, so its rest would be lost (a damaged or hand-made file)",
                               fname, c ? "\\u0000" : "a raw 0 byte", i);
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') {
            if (++depth > ST_MAX_DEPTH)
                return nb_fail(NB_ERR_FORMAT, "%s: header: JSON nested deeper than %d levels at byte %zu", fname,
                               ST_MAX_DEPTH, i);
        } else if (c == '}' || c == ']') depth--;
        else if (c == ',' || c == ':') {
            if (++values > ST_MAX_VALUES)
                return nb_fail(NB_ERR_FORMAT, "%s: header: more than %d JSON values", fname, ST_MAX_VALUES);
        }
    }
    return NB_OK;
}

/* The 8-byte length, then the JSON header as a cJSON object (*root), with
 * only whitespace after it; *hlen is the header's length in bytes. */
static nb_status st_parse_header(const char *fname, const unsigned char *p, size_t len, cJSON **root, uint64_t *hlen)
{
    *root = NULL;
    if (len < 8)
        return nb_fail(NB_ERR_FORMAT, "%s: header length: the file holds %zu bytes, fewer than the 8 of the length",
                       fname, len);
    *hlen = nb_ld_le64(p);
    if (*hlen > ST_MAX_HEADER)
        return nb_fail(NB_ERR_FORMAT, "%s: header length: %" PRIu64 " bytes is more than the limit of %u", fname,
                       *hlen, ST_MAX_HEADER);
    if (*hlen > len - 8)
        return nb_fail(NB_ERR_FORMAT, "%s: header length: %" PRIu64 " bytes, but only %zu follow", fname, *hlen,
                       len - 8);
    const char *hdr = (const char *)p + 8;
    nb_status pre = st_prescan(fname, hdr, (size_t)*hlen);
    if (pre) return pre;
    /* The parse-end pointer, never cJSON_GetErrorPtr(): that one is a
     * process-wide global that another thread's parse may overwrite. */
    const char *hend = NULL;
    cJSON *r = cJSON_ParseWithLengthOpts(hdr, (size_t)*hlen, &hend, 0);
    if (!r) {
        size_t at = hend && hend >= hdr && hend <= hdr + *hlen ? (size_t)(hend - hdr) : 0;
        return nb_fail(NB_ERR_FORMAT, "%s: header: not valid JSON (near byte %zu of the header)", fname, at);
    }
    /* After the JSON only padding (whitespace) may follow. */
    for (const char *q = hend; q && q < hdr + *hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            cJSON_Delete(r);
            return nb_fail(NB_ERR_FORMAT, "%s: header: unexpected bytes after the JSON at byte %zu of the header",
                           fname, (size_t)(q - hdr));
        }
    }
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return nb_fail(NB_ERR_FORMAT, "%s: header: the JSON is not an object", fname);
    }
    *root = r;
    return NB_OK;
}

/* The __metadata__ object's string values, into st. */
static nb_status st_read_meta(const char *fname, const cJSON *c, nb_safetensors *st)
{
    if (!cJSON_IsObject(c)) return nb_fail(NB_ERR_FORMAT, "%s: header: '__metadata__' is not an object", fname);
    char shown[80];
    for (const cJSON *m = c->child; m; m = m->next) {
        if (!m->string || !cJSON_IsString(m))
            return nb_fail(NB_ERR_FORMAT, "%s: header: __metadata__ '%s': the value is not a string", fname,
                           nb_escape_text(shown, sizeof shown, m->string, 64));
        nb_status s = meta_append(st, m->string, m->valuestring);
        if (s) return s;
    }
    return NB_OK;
}

/* Every entry of the header: the metadata into st, the tensors' checked
 * descriptions into descs (*nd of them). */
static nb_status st_read_entries(const char *fname, const cJSON *root, size_t data_len, nb_safetensors *st,
                                 st_desc *descs, size_t *nd)
{
    int have_meta = 0;
    *nd = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        nb_status s;
        if (!c->string) return nb_fail(NB_ERR_FORMAT, "%s: header: an entry has no name", fname);
        if (!strcmp(c->string, "__metadata__")) {
            if (have_meta++) return nb_fail(NB_ERR_FORMAT, "%s: header: '__metadata__' appears twice", fname);
            if ((s = st_read_meta(fname, c, st))) return s;
            continue;
        }
        if ((s = st_describe(fname, c, data_len, &descs[*nd]))) return s;
        (*nd)++;
    }
    return NB_OK;
}

/* No metadata key twice. */
static nb_status st_check_meta_keys(const char *fname, const nb_safetensors *st)
{
    if (st->nm < 2) return NB_OK;
    const st_meta **mk = malloc((size_t)st->nm * sizeof *mk);
    char shown[80];
    if (!mk) return nb_fail(NB_ERR_NOMEM, "%s: out of memory", fname);
    for (int i = 0; i < st->nm; i++)
        mk[i] = &st->m[i];
    qsort(mk, (size_t)st->nm, sizeof *mk, cmp_meta_keys);
    nb_status s = NB_OK;
    for (int i = 1; i < st->nm && !s; i++)
        if (!strcmp(mk[i - 1]->key, mk[i]->key))
            s = nb_fail(NB_ERR_FORMAT, "%s: header: __metadata__ key '%s' appears twice", fname,
                        nb_escape_text(shown, sizeof shown, mk[i]->key, 64));
    free(mk);
    return s;
}

/* No tensor name twice, no two tensors' data overlapping (order: nd
 * pointers into the descriptions, sorted here). */
static nb_status st_check_layout(const char *fname, const st_desc **order, size_t nd)
{
    char a[132], b[132]; /* names as messages quote them */
    qsort(order, nd, sizeof *order, cmp_desc_names);
    for (size_t i = 1; i < nd; i++)
        if (!strcmp(order[i - 1]->name, order[i]->name))
            return nb_fail(NB_ERR_FORMAT, "%s: header: tensor name '%s' appears twice", fname,
                           nb_escape_text(a, sizeof a, order[i]->name, SIZE_MAX));
    qsort(order, nd, sizeof *order, cmp_desc_offsets);
    for (size_t i = 1; i < nd; i++)
        if (order[i]->begin < order[i - 1]->end)
            return nb_fail(NB_ERR_FORMAT,
                           "%s: header: tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64 ", %" PRIu64
                           "] overlap",
                           fname, nb_escape_text(a, sizeof a, order[i - 1]->name, SIZE_MAX), order[i - 1]->begin,
                           order[i - 1]->end, nb_escape_text(b, sizeof b, order[i]->name, SIZE_MAX), order[i]->begin,
                           order[i]->end);
    return NB_OK;
}

/* Everything checked: allocate and convert, in the header's order. */
static nb_status st_load_tensors(const char *fname, const st_desc *descs, size_t nd, const unsigned char *base,
                                 nb_safetensors *st)
{
    for (size_t i = 0; i < nd; i++) {
        const st_desc *d = &descs[i];
        nb_tensor *t = nb_tensor_new(d->rank, d->shape);
        char shown[132];
        if (!t)
            return nb_fail(NB_ERR_NOMEM, "%s: tensor '%s': %s", fname, nb_escape_text(shown, sizeof shown, d->name, SIZE_MAX),
                           nb_last_error());
        st_convert(d, base + d->begin, t->data, (size_t)t->size);
        nb_status s = st_append(st, d->name, t);
        if (!s) st->e[st->n - 1].dtype = st_dtype_name(d->dt);
        if (s) return s;
    }
    return NB_OK;
}

static nb_status st_parse_named(const char *fname, const void *data, size_t len, nb_safetensors **out)
{
    if (out) *out = NULL;
    if (!out || (!data && len > 0)) return nb_fail(NB_ERR_ARG, "safetensors: NULL argument");
    const unsigned char *p = data;
    cJSON *root = NULL;
    uint64_t hlen = 0;
    nb_status s = st_parse_header(fname, p, len, &root, &hlen);
    if (s) return s;
    const unsigned char *base = p + 8 + hlen;
    const size_t data_len = len - 8 - (size_t)hlen;
    size_t nitems = 0, nd = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        nitems++;
    st_desc *descs = calloc(nitems ? nitems : 1, sizeof *descs);
    const st_desc **order = calloc(nitems ? nitems : 1, sizeof *order);
    nb_safetensors *st = nb_safetensors_new();
    if (!descs || !order || !st) s = nb_fail(NB_ERR_NOMEM, "%s: out of memory", fname);
    if (!s) s = st_read_entries(fname, root, data_len, st, descs, &nd);
    for (size_t i = 0; !s && i < nd; i++)
        order[i] = &descs[i];
    if (!s) s = st_check_meta_keys(fname, st);
    if (!s) s = st_check_layout(fname, order, nd);
    if (!s) s = st_load_tensors(fname, descs, nd, base, st);
    cJSON_Delete(root);
    free(descs);
    free(order);
    if (s) {
        nb_safetensors_free(st);
        return s;
    }
    *out = st;
    return NB_OK;
}

nb_status nb_safetensors_parse(const void *data, size_t len, nb_safetensors **out)
{
    return st_parse_named(NB_MEMORY_NAME, data, len, out);
}

nb_status nb_safetensors_read(const char *path, nb_safetensors **out)
{
    if (out) *out = NULL;
    if (!path || !out) return nb_fail(NB_ERR_ARG, "safetensors_read: NULL argument");
    void *buf;
    size_t len;
    nb_status s = nb_read_file(path, 0, &buf, &len);
    if (s) return s;
    s = st_parse_named(path, buf, len, out);
    free(buf);
    return s;
}

/* ----------------------------------------------------------------- write */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->n + n + 1) {
            if (ncap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            ncap *= 2;
        }
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* A JSON string literal. Bytes >= 0x80 pass through (UTF-8). */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        char esc[8];
        if (*q == '"' || *q == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*q;
            sb_put(b, esc, 2);
        } else if (*q < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *q);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)q, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_entry_names(const void *a, const void *b)
{
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int cmp_meta_keys(const void *a, const void *b)
{
    return strcmp((*(const st_meta *const *)a)->key, (*(const st_meta *const *)b)->key);
}

/* The JSON header of the tensors ents (sorted) and the metadata metas
 * (sorted), padded with spaces to a multiple of 8; *data_bytes: the bytes
 * of data after it. */
static nb_status st_header_json(sbuf *b, const st_entry *const *ents, int n, const st_meta *const *metas, int nm,
                                size_t esize, uint64_t *data_bytes)
{
    sb_str(b, "{");
    if (nm > 0) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < nm; i++) {
            if (i) sb_str(b, ",");
            sb_json_string(b, metas[i]->key);
            sb_str(b, ":");
            sb_json_string(b, metas[i]->value);
        }
        sb_str(b, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const nb_tensor *t = ents[i]->t;
        char num[64];
        if (i || nm > 0) sb_str(b, ",");
        sb_json_string(b, ents[i]->name);
        sb_str(b, esize == 8 ? ":{\"dtype\":\"F64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int k = 0; k < t->rank; k++) {
            snprintf(num, sizeof num, k ? ",%" PRId64 : "%" PRId64, t->shape[k]);
            sb_str(b, num);
        }
        uint64_t bytes = (uint64_t)t->size * esize;
        if ((uint64_t)t->size > UINT64_MAX / esize || off > UINT64_MAX - bytes)
            return nb_fail(NB_ERR_TOO_LARGE, "safetensors_serialize: the tensors are too large");
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
        sb_str(b, num);
        off += bytes;
    }
    sb_str(b, "}");
    /* Pad with spaces so that the data starts at a multiple of 8. */
    while (!b->oom && b->n % 8 != 0)
        sb_str(b, " ");
    if (b->oom) return nb_fail(NB_ERR_NOMEM, "safetensors_serialize: out of memory");
    *data_bytes = off;
    return NB_OK;
}

/* The tensors' values, little-endian F32 or F64, one after the other. */
static void st_put_data(unsigned char *d, const st_entry *const *ents, int n, int write_f64)
{
    for (int i = 0; i < n; i++) {
        const nb_tensor *t = ents[i]->t;
        for (int64_t k = 0; k < t->size; k++) {
            if (write_f64)
                nb_st_le64(d + 8 * k, nb_f64_to_bits((double)t->data[k]));
            else
                nb_st_le32(d + 4 * k, nb_f32_to_bits((float)t->data[k]));
        }
        d += (size_t)t->size * (write_f64 ? 8 : 4);
    }
}

nb_status nb_safetensors_serialize(const nb_safetensors *st, int write_f64, void **data, size_t *len)
{
    if (data) *data = NULL;
    if (len) *len = 0;
    if (!st || !data || !len) return nb_fail(NB_ERR_ARG, "safetensors_serialize: NULL argument");
    const st_entry **ents = calloc(st->n ? (size_t)st->n : 1, sizeof *ents);
    const st_meta **metas = calloc(st->nm ? (size_t)st->nm : 1, sizeof *metas);
    sbuf b = {0};
    uint64_t off = 0;
    nb_status s = ents && metas ? NB_OK : nb_fail(NB_ERR_NOMEM, "safetensors_serialize: out of memory");
    for (int i = 0; !s && i < st->n; i++)
        ents[i] = &st->e[i];
    for (int i = 0; !s && i < st->nm; i++)
        metas[i] = &st->m[i];
    if (!s) {
        /* Sorted by name and key: the same tensors give the same bytes. */
        qsort(ents, (size_t)st->n, sizeof *ents, cmp_entry_names);
        qsort(metas, (size_t)st->nm, sizeof *metas, cmp_meta_keys);
        s = st_header_json(&b, ents, st->n, metas, st->nm, write_f64 ? 8 : 4, &off);
    }
    if (!s && off > SIZE_MAX - 8 - b.n) s = nb_fail(NB_ERR_TOO_LARGE, "safetensors_serialize: the tensors are too large");
    size_t total = s ? 0 : 8 + b.n + (size_t)off;
    unsigned char *buf = s ? NULL : malloc(total);
    if (!s && !buf) s = nb_fail(NB_ERR_NOMEM, "safetensors_serialize: out of memory for %zu bytes", total);
    if (!s) {
        nb_st_le64(buf, (uint64_t)b.n);
        memcpy(buf + 8, b.p, b.n);
        st_put_data(buf + 8 + b.n, ents, st->n, write_f64);
        *data = buf;
        *len = total;
    }
    free(ents);
    free(metas);
    free(b.p);
    return s;
}

nb_status nb_safetensors_write(const char *path, const nb_safetensors *st, int write_f64)
{
    if (!path || !st) return nb_fail(NB_ERR_ARG, "safetensors_write: NULL argument");
    void *buf;
    size_t len;
    nb_status s = nb_safetensors_serialize(st, write_f64, &buf, &len);
    if (s) return s;
    s = nb_write_file_atomic(path, buf, len);
    free(buf);
    return s;
}
