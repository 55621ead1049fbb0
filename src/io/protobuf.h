/* The protobuf wire format, as much as ONNX needs: a reader over untrusted
 * bytes and a growable writer. Not installed.
 *
 * A message is a sequence of fields, each a key varint (field << 3 | wire
 * type) and a value: wire 0 a varint (<= 10 bytes), 1 eight little-endian
 * bytes, 2 a varint length and that many bytes (strings, bytes, nested
 * messages, packed repeated scalars), 5 four little-endian bytes. Groups
 * (wire 3 and 4) are obsolete and refused. The reader checks every length
 * against the bytes that remain, so a field never reaches past its message. */
#ifndef NB_PROTOBUF_H
#define NB_PROTOBUF_H

#include "../core/core.h"

#include <stddef.h>
#include <stdint.h>

enum { NB_PB_VARINT = 0, NB_PB_FIXED64 = 1, NB_PB_BYTES = 2, NB_PB_FIXED32 = 5 };

typedef struct nb_pb_reader {
    const unsigned char *p, *end;
} nb_pb_reader;

/* One field as read: its number, wire type and value (v for varints and
 * fixed values, data/len for wire type 2, pointing into the message). */
typedef struct nb_pb_field {
    uint32_t num;
    int wire;
    uint64_t v;
    const unsigned char *data;
    size_t len;
} nb_pb_field;

static inline nb_pb_reader nb_pb_reader_of(const void *data, size_t len)
{
    const unsigned char *p = data;
    nb_pb_reader r = {p, p ? p + len : p}; /* an absent message (NULL) reads as empty */
    return r;
}

/* The next field: 1 and *f filled, 0 at the end of the message, -1 on
 * malformed bytes (a truncated varint or value, a length past the end, field
 * number 0, a group or unknown wire type) with the error set, naming what. */
int nb_pb_next(nb_pb_reader *r, nb_pb_field *f, const char *what);

/* Reads one varint from r (for packed repeated fields); 0 and an error set
 * if it is truncated or longer than 10 bytes. */
int nb_pb_read_varint(nb_pb_reader *r, uint64_t *v);

/* The growable writer: every put grows data as needed; after an allocation
 * failure failed is set and further puts do nothing. */
typedef struct nb_pb_writer {
    unsigned char *data;
    size_t len, cap;
    int failed;
} nb_pb_writer;

void nb_pb_put_varint(nb_pb_writer *w, uint32_t num, uint64_t v);
void nb_pb_put_fixed32(nb_pb_writer *w, uint32_t num, uint32_t v);
void nb_pb_put_bytes(nb_pb_writer *w, uint32_t num, const void *data, size_t len);
void nb_pb_put_string(nb_pb_writer *w, uint32_t num, const char *s);
/* A nested message: the bytes of sub as a length-delimited field (sub is
 * freed; its failure passes to w). */
void nb_pb_put_message(nb_pb_writer *w, uint32_t num, nb_pb_writer *sub);
/* Packed repeated int64 (as varints, two's complement for negatives). */
void nb_pb_put_packed_int64(nb_pb_writer *w, uint32_t num, const int64_t *v, int n);
void nb_pb_writer_free(nb_pb_writer *w);

#endif
