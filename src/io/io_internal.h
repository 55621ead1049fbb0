/* Helpers shared by the file readers and writers of src/io: byte-order
 * loads and stores that never assume alignment, and half-precision
 * conversions. Not installed. */
#ifndef NB_IO_INTERNAL_H
#define NB_IO_INTERNAL_H

#include "../core/core.h"

#include <stdint.h>
#include <string.h>

/* Name used in messages for data parsed from memory. */
#define NB_MEMORY_NAME "<memory>"

static inline uint16_t nb_ld_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint16_t nb_ld_be16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t nb_ld_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint32_t nb_ld_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline uint64_t nb_ld_le64(const unsigned char *p)
{
    return (uint64_t)nb_ld_le32(p) | ((uint64_t)nb_ld_le32(p + 4) << 32);
}
static inline uint64_t nb_ld_be64(const unsigned char *p)
{
    return ((uint64_t)nb_ld_be32(p) << 32) | (uint64_t)nb_ld_be32(p + 4);
}
static inline void nb_st_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static inline void nb_st_le64(unsigned char *p, uint64_t v)
{
    nb_st_le32(p, (uint32_t)v);
    nb_st_le32(p + 4, (uint32_t)(v >> 32));
}

static inline float nb_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline double nb_bits_to_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
static inline uint32_t nb_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline uint64_t nb_f64_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* IEEE 754 binary16 -> binary32, exactly (every half is a float). */
static inline float nb_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf or NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* Subnormal half: normalise the mantissa. */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    return nb_bits_to_f32(bits);
}

/* bfloat16 is the top half of a binary32. */
static inline float nb_bf16_to_f32(uint16_t h)
{
    return nb_bits_to_f32((uint32_t)h << 16);
}

/* a * b into *out unless it overflows size_t (returns 0 then). */
static inline int nb_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

#endif
