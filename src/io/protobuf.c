/* The protobuf wire format (protobuf.h): a bounds-checked reader and a
 * growable writer. */
#include "protobuf.h"

#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

int nb_pb_read_varint(nb_pb_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return nb_fail(NB_ERR_FORMAT, "truncated varint"), 0;
        const unsigned b = *r->p++;
        /* The 10th byte holds bit 63 alone: more is an overlong varint. */
        if (i == 9 && b > 1) return nb_fail(NB_ERR_FORMAT, "varint longer than 64 bits"), 0;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return nb_fail(NB_ERR_FORMAT, "varint longer than 10 bytes"), 0;
}

int nb_pb_next(nb_pb_reader *r, nb_pb_field *f, const char *what)
{
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (!nb_pb_read_varint(r, &key)) return nb_fail(NB_ERR_FORMAT, "%s: truncated field key", what), -1;
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff)
        return nb_fail(NB_ERR_FORMAT, "%s: field number %llu is out of range 1..2^29-1", what,
                       (unsigned long long)(key >> 3)),
               -1;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    f->v = 0, f->data = NULL, f->len = 0;
    const size_t left = (size_t)(r->end - r->p);
    switch (f->wire) {
    case NB_PB_VARINT:
        if (!nb_pb_read_varint(r, &f->v)) {
            char why[64];
            snprintf(why, sizeof why, "%s", nb_last_error());
            return nb_fail(NB_ERR_FORMAT, "%s: field %u: %s", what, f->num, why), -1;
        }
        return 1;
    case NB_PB_FIXED64:
        if (left < 8) return nb_fail(NB_ERR_FORMAT, "%s: field %u: truncated 8-byte value", what, f->num), -1;
        f->v = nb_ld_le64(r->p);
        r->p += 8;
        return 1;
    case NB_PB_FIXED32:
        if (left < 4) return nb_fail(NB_ERR_FORMAT, "%s: field %u: truncated 4-byte value", what, f->num), -1;
        f->v = nb_ld_le32(r->p);
        r->p += 4;
        return 1;
    case NB_PB_BYTES: {
        uint64_t n;
        if (!nb_pb_read_varint(r, &n)) return nb_fail(NB_ERR_FORMAT, "%s: field %u: truncated length", what, f->num), -1;
        if (n > (uint64_t)(r->end - r->p))
            return nb_fail(NB_ERR_FORMAT, "%s: field %u: length %llu is past the end (%zu bytes left)", what, f->num,
                           (unsigned long long)n, (size_t)(r->end - r->p)),
                   -1;
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    }
    default:
        return nb_fail(NB_ERR_FORMAT, "%s: field %u has wire type %d (groups and unknown types are not supported)", what,
                       f->num, f->wire),
               -1;
    }
}

/* Room for extra more bytes in w. */
static int reserve(nb_pb_writer *w, size_t extra)
{
    if (w->failed) return 0;
    if (extra > SIZE_MAX / 2 - w->len) return w->failed = 1, 0;
    if (w->len + extra <= w->cap) return 1;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + extra) cap *= 2;
    unsigned char *q = realloc(w->data, cap);
    if (!q) return w->failed = 1, 0;
    w->data = q, w->cap = cap;
    return 1;
}

static void raw_varint(nb_pb_writer *w, uint64_t v)
{
    if (!reserve(w, 10)) return;
    do {
        unsigned char b = (unsigned char)(v & 0x7f);
        v >>= 7;
        w->data[w->len++] = (unsigned char)(b | (v ? 0x80 : 0));
    } while (v);
}

void nb_pb_put_varint(nb_pb_writer *w, uint32_t num, uint64_t v)
{
    raw_varint(w, (uint64_t)num << 3 | NB_PB_VARINT);
    raw_varint(w, v);
}

void nb_pb_put_fixed32(nb_pb_writer *w, uint32_t num, uint32_t v)
{
    raw_varint(w, (uint64_t)num << 3 | NB_PB_FIXED32);
    if (!reserve(w, 4)) return;
    nb_st_le32(w->data + w->len, v);
    w->len += 4;
}

void nb_pb_put_bytes(nb_pb_writer *w, uint32_t num, const void *data, size_t len)
{
    raw_varint(w, (uint64_t)num << 3 | NB_PB_BYTES);
    raw_varint(w, len);
    if (!len || !reserve(w, len)) return;
    memcpy(w->data + w->len, data, len);
    w->len += len;
}

void nb_pb_put_string(nb_pb_writer *w, uint32_t num, const char *s) { nb_pb_put_bytes(w, num, s, strlen(s)); }

void nb_pb_put_message(nb_pb_writer *w, uint32_t num, nb_pb_writer *sub)
{
    if (sub->failed) w->failed = 1;
    else nb_pb_put_bytes(w, num, sub->data, sub->len);
    nb_pb_writer_free(sub);
}

void nb_pb_put_packed_int64(nb_pb_writer *w, uint32_t num, const int64_t *v, int n)
{
    nb_pb_writer sub = {0};
    for (int i = 0; i < n; i++) raw_varint(&sub, (uint64_t)v[i]);
    nb_pb_put_message(w, num, &sub);
}

void nb_pb_writer_free(nb_pb_writer *w)
{
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}
