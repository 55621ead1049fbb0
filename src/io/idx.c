/* IDX, the format of MNIST and Fashion-MNIST:
 *   0x00 0x00 TYPE NDIMS, then NDIMS big-endian uint32 dims, then the data,
 *   row-major and big-endian, TYPE one of 0x08 u8, 0x09 i8, 0x0B i16,
 *   0x0C i32, 0x0D f32, 0x0E f64.
 * Files are often gzip-compressed (detected by the gzip magic 1f 8b). The
 * decompressed size is bounded by what the header implies before anything
 * large is allocated, and inflating stops as soon as the stream is longer
 * than that (a gzip bomb costs at most one extra byte). */
#include "io_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

/* Deflate cannot compress better than about 1032:1; a header that implies
 * more data than that from the compressed size is lying. */
#define NB_DEFLATE_MAX_RATIO 1032u

typedef struct idx_header {
    int type;
    int rank;
    int64_t shape[NB_MAX_RANK];
    size_t elem_size;
    size_t header_bytes;
    size_t data_bytes;
} idx_header;

static size_t idx_type_size(int type)
{
    switch (type) {
    case 0x08:
    case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C:
    case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
    }
}

/* The first 4 bytes: magic, type and rank. */
static nb_status idx_check_magic(const char *name, const unsigned char *p, idx_header *h)
{
    if (p[0] != 0 || p[1] != 0)
        return nb_fail(NB_ERR_FORMAT, "%s: magic: bytes %02x %02x are not 00 00: not an IDX file", name, p[0], p[1]);
    h->type = p[2];
    h->elem_size = idx_type_size(p[2]);
    if (!h->elem_size)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: type: 0x%02x is not an IDX type (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64)",
                       name, p[2]);
    if (p[3] < 1 || p[3] > NB_MAX_RANK)
        return nb_fail(NB_ERR_FORMAT, "%s: ndims: %d is not in 1..%d", name, p[3], NB_MAX_RANK);
    h->rank = p[3];
    h->header_bytes = 4 + 4 * (size_t)h->rank;
    return NB_OK;
}

/* The dims, and the data size they imply (with overflow checks). */
static nb_status idx_check_dims(const char *name, const unsigned char *p, idx_header *h)
{
    uint64_t count = 1;
    int overflow = 0;
    for (int i = 0; i < h->rank; i++) {
        uint32_t d = nb_ld_be32(p + 4 * i);
        h->shape[i] = d;
        if (d != 0 && count > UINT64_MAX / d)
            overflow = 1;
        else
            count *= d;
    }
    char sbuf[160];
    nb_shape_str(h->rank, h->shape, sbuf, sizeof sbuf);
    if (overflow || count > (uint64_t)INT64_MAX || count > SIZE_MAX / h->elem_size ||
        count > (uint64_t)(SIZE_MAX / sizeof(nb_real)))
        return nb_fail(NB_ERR_FORMAT, "%s: dims: shape %s has too many elements", name, sbuf);
    h->data_bytes = (size_t)count * h->elem_size;
    return NB_OK;
}

/* Converts count big-endian elements of the header's type into dst. */
static void idx_convert(const idx_header *h, const unsigned char *src, nb_real *dst, size_t count)
{
    switch (h->type) {
    case 0x08:
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)src[i];
        break;
    case 0x09:
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)(int8_t)src[i];
        break;
    case 0x0B:
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)(int16_t)nb_ld_be16(src + 2 * i);
        break;
    case 0x0C:
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)(int32_t)nb_ld_be32(src + 4 * i);
        break;
    case 0x0D:
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)nb_bits_to_f32(nb_ld_be32(src + 4 * i));
        break;
    case 0x0E:
        for (size_t i = 0; i < count; i++)
            dst[i] = (nb_real)nb_bits_to_f64(nb_ld_be64(src + 8 * i));
        break;
    }
}

static nb_status idx_make_tensor(const char *name, const idx_header *h, const unsigned char *data, nb_tensor **out)
{
    nb_tensor *t = nb_tensor_new(h->rank, h->shape);
    if (!t) return nb_fail(NB_ERR_NOMEM, "%s: %s", name, nb_last_error());
    idx_convert(h, data, t->data, h->data_bytes / h->elem_size);
    *out = t;
    return NB_OK;
}

static nb_status idx_parse_raw(const char *name, const unsigned char *p, size_t len, nb_tensor **out)
{
    idx_header h;
    if (len < 4)
        return nb_fail(NB_ERR_FORMAT, "%s: header: the file holds %zu bytes, fewer than the 4 of the magic", name, len);
    nb_status s = idx_check_magic(name, p, &h);
    if (s) return s;
    if (len < h.header_bytes)
        return nb_fail(NB_ERR_FORMAT, "%s: dims: %d dims need a %zu-byte header, but the file holds %zu bytes", name,
                       h.rank, h.header_bytes, len);
    if ((s = idx_check_dims(name, p + 4, &h))) return s;
    size_t avail = len - h.header_bytes;
    if (h.data_bytes != avail) {
        char sbuf[160];
        nb_shape_str(h.rank, h.shape, sbuf, sizeof sbuf);
        return nb_fail(
            NB_ERR_FORMAT,
            "%s: dims: header says shape %s of %zu-byte elements = %zu bytes, but the file holds %zu bytes of data",
            name, sbuf, h.elem_size, h.data_bytes, avail);
    }
    return idx_make_tensor(name, &h, p + h.header_bytes, out);
}

/* Inflates exactly n bytes into dst. Returns 0, or 1 if the stream ended
 * first (*got says how many came), or -1 on a zlib error. */
static int inflate_exact(z_stream *zs, unsigned char *dst, size_t n, size_t *got, int *zret)
{
    size_t done = 0;
    *zret = Z_OK;
    while (done < n) {
        size_t want = n - done;
        zs->next_out = dst + done;
        zs->avail_out = want > (size_t)UINT32_MAX ? UINT32_MAX : (uInt)want;
        uInt before = zs->avail_out;
        int r = inflate(zs, Z_NO_FLUSH);
        done += before - zs->avail_out;
        *zret = r;
        if (r == Z_STREAM_END) break;
        if (r != Z_OK) {
            /* Z_BUF_ERROR with output room means the input ran out. */
            *got = done;
            return r == Z_BUF_ERROR ? 1 : -1;
        }
    }
    *got = done;
    return done < n ? 1 : 0;
}

static nb_status gzip_corrupt(const char *name, const z_stream *zs)
{
    return nb_fail(NB_ERR_FORMAT, "%s: gzip: %s", name, zs->msg ? zs->msg : "corrupt stream");
}

/* The magic and the dims, inflated into h. */
static nb_status gzip_header(const char *name, z_stream *zs, idx_header *h, int *zret)
{
    unsigned char hdr[4 + 4 * NB_MAX_RANK];
    size_t got;
    int r = inflate_exact(zs, hdr, 4, &got, zret);
    if (r < 0) return gzip_corrupt(name, zs);
    if (r > 0)
        return nb_fail(NB_ERR_FORMAT, "%s: header: the decompressed data holds %zu bytes, fewer than the 4 of the magic",
                       name, got);
    nb_status s = idx_check_magic(name, hdr, h);
    if (s) return s;
    r = inflate_exact(zs, hdr + 4, 4 * (size_t)h->rank, &got, zret);
    if (r < 0) return gzip_corrupt(name, zs);
    if (r > 0)
        return nb_fail(NB_ERR_FORMAT, "%s: dims: %d dims need a %zu-byte header, but the decompressed data holds %zu bytes",
                       name, h->rank, h->header_bytes, 4 + got);
    return idx_check_dims(name, hdr + 4, h);
}

/* The stream must end after the data: one more byte means it is longer
 * than the header says (and inflating stops at once: no bomb); no bytes may
 * follow the compressed stream. */
static nb_status gzip_check_end(const char *name, z_stream *zs, const idx_header *h, const char *shape, int zret)
{
    if (zret != Z_STREAM_END) {
        unsigned char extra;
        size_t got;
        int r = inflate_exact(zs, &extra, 1, &got, &zret);
        if (r < 0) return gzip_corrupt(name, zs);
        if (got > 0)
            return nb_fail(NB_ERR_FORMAT, "%s: dims: the decompressed data is longer than the %zu bytes that shape %s implies",
                           name, h->header_bytes + h->data_bytes, shape);
        if (zret != Z_STREAM_END) return nb_fail(NB_ERR_FORMAT, "%s: gzip: the compressed stream is truncated", name);
    }
    if (zs->avail_in != 0)
        return nb_fail(NB_ERR_FORMAT, "%s: gzip: %u bytes of trailing data after the compressed stream", name,
                       zs->avail_in);
    return NB_OK;
}

/* The data after the header, checked against what len compressed bytes can
 * hold before anything is allocated; *data is the caller's to free. */
static nb_status gzip_data(const char *name, z_stream *zs, size_t len, const idx_header *h, unsigned char **data,
                           int *zret)
{
    char shape[160];
    nb_shape_str(h->rank, h->shape, shape, sizeof shape);
    uint64_t bound = (uint64_t)len * NB_DEFLATE_MAX_RATIO + 1024;
    if ((uint64_t)h->data_bytes > bound)
        return nb_fail(NB_ERR_FORMAT,
                       "%s: dims: header says shape %s = %zu bytes of data, more than %zu compressed bytes can hold",
                       name, shape, h->data_bytes, len);
    *data = malloc(h->data_bytes ? h->data_bytes : 1);
    if (!*data) return nb_fail(NB_ERR_NOMEM, "%s: out of memory for %zu bytes", name, h->data_bytes);
    if (h->data_bytes > 0) {
        size_t got;
        int r = inflate_exact(zs, *data, h->data_bytes, &got, zret);
        if (r < 0) return gzip_corrupt(name, zs);
        if (r > 0)
            return nb_fail(NB_ERR_FORMAT,
                           "%s: dims: header says shape %s = %zu bytes of data, but the decompressed file holds %zu",
                           name, shape, h->data_bytes, got);
    }
    return gzip_check_end(name, zs, h, shape, *zret);
}

static nb_status idx_parse_gzip(const char *name, const unsigned char *p, size_t len, nb_tensor **out)
{
    /* zlib counts input in uInt: refuse what it cannot take in one go. */
    if (len > UINT32_MAX) return nb_fail(NB_ERR_TOO_LARGE, "%s: the compressed file is larger than 4 GiB", name);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return nb_fail(NB_ERR_NOMEM, "%s: cannot initialise zlib", name);
    zs.next_in = (unsigned char *)p;
    zs.avail_in = (uInt)len;
    idx_header h;
    int zret = Z_OK;
    unsigned char *data = NULL;
    nb_status s = gzip_header(name, &zs, &h, &zret);
    if (!s) s = gzip_data(name, &zs, len, &h, &data, &zret);
    if (!s) s = idx_make_tensor(name, &h, data, out);
    inflateEnd(&zs);
    free(data);
    return s;
}

static nb_status idx_parse_named(const char *name, const void *data, size_t len, nb_tensor **out)
{
    if (out) *out = NULL;
    if (!out || (!data && len > 0)) return nb_fail(NB_ERR_ARG, "idx: NULL argument");
    const unsigned char *p = data;
    if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b) return idx_parse_gzip(name, p, len, out);
    return idx_parse_raw(name, p, len, out);
}

nb_status nb_idx_parse(const void *data, size_t len, nb_tensor **out)
{
    return idx_parse_named(NB_MEMORY_NAME, data, len, out);
}

/* The fast path: one read of the whole (usually compressed) file, then one
 * pass of inflate straight into a buffer of the exact size and one pass of
 * conversion. */
nb_status nb_idx_read(const char *path, nb_tensor **out)
{
    if (out) *out = NULL;
    if (!path || !out) return nb_fail(NB_ERR_ARG, "idx_read: NULL argument");
    void *buf;
    size_t len;
    nb_status s = nb_read_file(path, 0, &buf, &len);
    if (s) return s;
    s = idx_parse_named(path, buf, len, out);
    free(buf);
    return s;
}
