/* Convolution rows with the GEMM's left operand read in place: the AVX-512
 * GEMM of sgemm_avx512.c without im2col and without packing A.
 *
 * The im2col row of output pixel (i, j) is its window, ordered (p, q, c):
 *   A[(i,j), k] = x[i*s + p*d, j*s + q*d, c],  k = (p*fw + q)*C + c
 * (windows inside the image: no padding). In NHWC, for a fixed k, the rows
 * of the output pixels j, j+1, ... of one output row lie s*C floats apart in
 * x, and along k a window is a few contiguous segments: with dilation 1 the
 * fw*C values of each window row (fh segments), else the C values of each
 * tap (fh*fw segments). So the micro-kernel broadcasts A[(i, j+r), k] from
 * x + r*s*C + offset(k) directly, with no copy of the window: a tile is up
 * to DR = 12 consecutive pixels of one output row (a row of OW pixels is cut
 * into ceil(OW/12) balanced tiles: 24 -> 12 + 12, 26 -> 9 + 9 + 8) times
 * DN = 32 output channels (24 zmm accumulators), against a panel of the
 * kernel matrix packed once per forward pass (k-major, 32 columns, zero
 * past O).
 *
 * Same sums as the GEMM: each output is summed over k in order, in the K
 * slices of nb_sgemm_avx512 (nb_sgemm_avx512_kslice), the first slice's sum
 * plus the bias (the GEMM adds its sum to C = b), the later ones added to
 * what is stored, with FMAs as there; so Y is that kernel's bit for bit,
 * and the ReLU applied at the last store (z <= 0 ? 0 : z, NaN kept) is the
 * separate pass's. Only the order of tiles differs, which no sum sees. */
#include "kernels.h"
#include "sgemm_avx512.h"

#ifdef NB_HAVE_SGEMM_AVX512

#include <immintrin.h>

#define NB_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))

enum { DR = 12, DN = 32 };

/* Where one image's windows lie in x (floats). */
typedef struct {
    int64_t pix;    /* between the windows of neighbouring pixels of an output row: s*C */
    int64_t row;    /* between the windows of neighbouring output rows: s*W*C */
    int64_t seg;    /* values of a window contiguous in x: fw*C (dilation 1) or C */
    int64_t nq;     /* segments per window row: 1 (dilation 1) or fw */
    int64_t next_p; /* between window rows: d*W*C */
    int64_t next_q; /* between the segments of a window row: d*C */
} window_geom;

static inline __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

/* The stored value of one half-row: the slice's sum plus the bias (first
 * slice) or plus what is stored (later slices); without a bias the first
 * slice's sum is stored as it is, as the GEMM's beta 0 does. */
NB_AVX512 static inline __m512 tile_value(__m512 acc, const float *y, __mmask16 m, __m512 bias, bool first,
                                          bool has_bias)
{
    if (!first) return _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, y));
    return has_bias ? _mm512_add_ps(acc, bias) : acc;
}

/* z <= 0 ? 0 : z, lane by lane (false for NaN: NaN stays, as nb_relu). */
NB_AVX512 static inline __m512 relu_ps(__m512 z)
{
    return _mm512_mask_mov_ps(z, _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LE_OQ), _mm512_setzero_ps());
}

#define NB_DROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* One K slice [k0, k1) of one panel: the slice starts at value in0 of
 * segment q0 of window row p0 (found once per slice, not per tile). */
typedef struct {
    const window_geom *g;
    int64_t k0, k1, ldy;
    int64_t p0, q0, in0;
    const float *bp, *bias; /* the panel (P x DN, k-major), its biases or NULL */
    int nr;                 /* its columns */
    bool first, relu;       /* the first slice (bias), the last one with a ReLU */
} tile_args;

/* Output pixels [0, mr) of a tile whose first window starts at x0, for the
 * slice and panel of t, into y (rows ldy apart). mr and width are constants
 * in every expansion, so rows past mr are neither loaded nor computed (they
 * may lie past the image). width is the panel's columns rounded up to 16, 24
 * or 32: at 24 (O = 24, the ResNet's first stage) the right half of each row
 * is a 256-bit FMA, which a Zen 4 (512-bit FMAs double-pumped on 256-bit
 * units) runs at half the cost of a 512-bit one; the lanes it computes are
 * the same FMAs, so the sums are the same bits. */
NB_AVX512 static inline __attribute__((always_inline)) void tile_body(const tile_args *t, const float *x0,
                                                                      float *restrict y, const int mr, const int width)
{
    const window_geom *g = t->g;
    const float *restrict bp = t->bp, *bias = t->bias;
    const int64_t ldy = t->ldy, k1 = t->k1;
    const int nr = t->nr;
    const bool first = t->first, relu = t->relu, wide = width > 16;
#define NB_DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
    NB_DROWS(NB_DECL)
#undef NB_DECL
    const int64_t pix = g->pix;
    int64_t p = t->p0, q = t->q0, in = t->in0;
    for (int64_t k = t->k0; k < k1;) {
        const int64_t len = g->seg - in < k1 - k ? g->seg - in : k1 - k;
        const float *a = x0 + p * g->next_p + q * g->next_q + in;
        const float *b = bp + k * DN;
        for (int64_t u = 0; u < len; u++, a++, b += DN) {
            const __m512 b0 = _mm512_loadu_ps(b), b1 = wide ? _mm512_loadu_ps(b + 16) : b0;
#define NB_FMA(i)                                                                                                  \
    if (i < mr) {                                                                                                  \
        const __m512 ai = _mm512_set1_ps(a[i * pix]);                                                              \
        c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);                                                                \
        if (wide) c##i##b = nb_fma_right_half(ai, b1, c##i##b, width);                                          \
    }
            NB_DROWS(NB_FMA)
#undef NB_FMA
        }
        k += len, in = 0;
        if (++q == g->nq) q = 0, p++;
    }
    const __mmask16 m0 = lanes(nr), m1 = nr > 16 ? lanes(nr - 16) : 0;
    const bool has_bias = bias != NULL;
    const __m512 bias0 = has_bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 bias1 = has_bias && wide ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#define NB_STORE(i)                                                                                                \
    if (i < mr) {                                                                                                  \
        float *yi = y + (int64_t)i * ldy;                                                                          \
        const __m512 lo = tile_value(c##i##a, yi, m0, bias0, first, has_bias);                                     \
        _mm512_mask_storeu_ps(yi, m0, relu ? relu_ps(lo) : lo);                                                    \
        if (wide) {                                                                                                \
            const __m512 hi = tile_value(c##i##b, yi + 16, m1, bias1, first, has_bias);                            \
            _mm512_mask_storeu_ps(yi + 16, m1, relu ? relu_ps(hi) : hi);                                           \
        }                                                                                                          \
    }
    NB_DROWS(NB_STORE)
#undef NB_STORE
}


/* One tile of mr pixels (1..DR): the expansion of tile_body for that mr. */
NB_AVX512 static void tile(const tile_args *t, const float *x0, float *y, int mr)
{
#define NB_CASE(m)                                                                                                 \
    case m:                                                                                                        \
        if (t->nr > 24)                                                                                            \
            tile_body(t, x0, y, m, 32);                                                                            \
        else if (t->nr > 16)                                                                                       \
            tile_body(t, x0, y, m, 24);                                                                            \
        else                                                                                                       \
            tile_body(t, x0, y, m, 16);                                                                            \
        break;
    switch (mr) {
        NB_CASE(1) NB_CASE(2) NB_CASE(3) NB_CASE(4) NB_CASE(5) NB_CASE(6)
        NB_CASE(7) NB_CASE(8) NB_CASE(9) NB_CASE(10) NB_CASE(11) NB_CASE(12)
    default: break;
    }
#undef NB_CASE
}

/* Output rows [r0, r1) of one image x into y (pixels x O, row-major). */
static void conv_rows(const nb_window *w, int64_t O, const float *x, const float *packed, const float *bias,
                      bool relu, int64_t r0, int64_t r1, float *y)
{
    const int64_t C = w->C, s = w->stride, d = w->dilation, OW = w->OW;
    const window_geom g = {s * C, s * w->W * C, d == 1 ? w->fw * C : C, d == 1 ? 1 : w->fw, d * w->W * C, d * C};
    const int64_t P = (int64_t)w->fh * w->fw * C, kc = nb_sgemm_avx512_kslice(P);
    const int64_t tiles = (OW + DR - 1) / DR;
    for (int64_t jr = 0; jr < O; jr += DN) {
        tile_args t = {&g, 0, 0, O, 0, 0, 0, packed + jr * P, bias ? bias + jr : NULL,
                       (int)(O - jr < DN ? O - jr : DN), true, false};
        for (t.k0 = 0; t.k0 < P; t.k0 += kc) {
            t.k1 = P - t.k0 < kc ? P : t.k0 + kc;
            t.first = t.k0 == 0, t.relu = relu && t.k1 == P;
            const int64_t s0 = t.k0 / g.seg;
            t.p0 = s0 / g.nq, t.q0 = s0 % g.nq, t.in0 = t.k0 - s0 * g.seg;
            for (int64_t i = r0; i < r1; i++)
                for (int64_t u = 0; u < tiles; u++) {
                    const int64_t j0 = OW * u / tiles, j1 = OW * (u + 1) / tiles;
                    tile(&t, x + i * g.row + j0 * g.pix, y + ((i - r0) * OW + j0) * O + jr, (int)(j1 - j0));
                }
        }
    }
}

/* ------------------------------------------------ the kernel's gradient */

/* dK^T[o, k] += sum over the pixels (i, j) of dz[(i, j), o] A[(i, j), k],
 * A the im2col rows of the forward pass (the same window_geom), dz the
 * gradient of the output rows (pixels x O, row-major), dK^T the kernel
 * matrix's gradient transposed (O x P). A tile is up to KR = 12 output
 * channels (broadcast from dz: 12 consecutive values of a pixel's row)
 * times up to 32 consecutive k of one window segment (loaded from x, where
 * they are contiguous): 24 accumulators summed over every pixel of the rows
 * in order (rows, then pixels along a row), then added to dK^T. No im2col
 * and no packing; the sums are over the same products as cols^T dZ but in
 * another grouping, so the choice between the two is by shape alone. */
enum { KR = 12 };

typedef struct {
    const window_geom *g;
    int64_t OW, rows, O, P;
    const float *x, *dz;
    float *dkt;
} kernel_grad_args;

/* The tile of channels [o0, o0 + mr) and columns [k0, k0 + len) of dK^T,
 * whose values lie at xoff in every window. mr and width (len rounded up to
 * 16, 24 or 32, as tile_body) are constants in every expansion. */
NB_AVX512 static inline __attribute__((always_inline)) void kernel_grad_body(const kernel_grad_args *t, int64_t o0,
                                                                             int64_t xoff, int64_t k0, int len,
                                                                             const int mr, const int width)
{
    const window_geom *g = t->g;
    const bool wide = width > 16;
#define NB_DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
    NB_DROWS(NB_DECL)
#undef NB_DECL
    const __mmask16 m0 = lanes(len), m1 = len > 16 ? lanes(len - 16) : 0;
    const int64_t O = t->O, pix = g->pix;
    for (int64_t i = 0; i < t->rows; i++) {
        const float *xr = t->x + i * g->row + xoff;
        const float *dr = t->dz + i * t->OW * O + o0;
        for (int64_t j = 0; j < t->OW; j++, xr += pix, dr += O) {
            const __m512 b0 = _mm512_maskz_loadu_ps(m0, xr), b1 = wide ? _mm512_maskz_loadu_ps(m1, xr + 16) : b0;
#define NB_FMA(i)                                                                                                  \
    if (i < mr) {                                                                                                  \
        const __m512 ai = _mm512_set1_ps(dr[i]);                                                                   \
        c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);                                                                \
        if (wide) c##i##b = nb_fma_right_half(ai, b1, c##i##b, width);                                          \
    }
            NB_DROWS(NB_FMA)
#undef NB_FMA
        }
    }
#define NB_STORE(i)                                                                                                \
    if (i < mr) {                                                                                                  \
        float *d = t->dkt + (o0 + i) * t->P + k0;                                                                  \
        _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d), c##i##a));                        \
        if (wide) _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d + 16), c##i##b));    \
    }
    NB_DROWS(NB_STORE)
#undef NB_STORE
}

NB_AVX512 static void kernel_grad_tile(const kernel_grad_args *t, int64_t o0, int64_t xoff, int64_t k0, int len,
                                       int mr)
{
#define NB_CASE(m)                                                                                                 \
    case m:                                                                                                        \
        if (len > 24)                                                                                              \
            kernel_grad_body(t, o0, xoff, k0, len, m, 32);                                                         \
        else if (len > 16)                                                                                         \
            kernel_grad_body(t, o0, xoff, k0, len, m, 24);                                                         \
        else                                                                                                       \
            kernel_grad_body(t, o0, xoff, k0, len, m, 16);                                                         \
        break;
    switch (mr) {
        NB_CASE(1) NB_CASE(2) NB_CASE(3) NB_CASE(4) NB_CASE(5) NB_CASE(6)
        NB_CASE(7) NB_CASE(8) NB_CASE(9) NB_CASE(10) NB_CASE(11) NB_CASE(12)
    default: break;
    }
#undef NB_CASE
}

/* Every tile of dK^T for output rows [0, rows) of one image x: the O
 * channels in ceil(O/KR) balanced blocks, each window segment in columns of
 * 32 (the last one shorter). */
static void kernel_grad_rows(const nb_window *w, int64_t O, const float *x, const float *dz, int64_t rows, float *dkt)
{
    const int64_t C = w->C, s = w->stride, d = w->dilation;
    const window_geom g = {s * C, s * w->W * C, d == 1 ? w->fw * C : C, d == 1 ? 1 : w->fw, d * w->W * C, d * C};
    const kernel_grad_args t = {&g, w->OW, rows, O, (int64_t)w->fh * w->fw * C, x, dz, dkt};
    const int64_t blocks = (O + KR - 1) / KR, segments = w->fh * g.nq;
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t o0 = O * b / blocks, o1 = O * (b + 1) / blocks;
        for (int64_t sg = 0; sg < segments; sg++) {
            const int64_t xoff = sg / g.nq * g.next_p + sg % g.nq * g.next_q;
            for (int64_t in = 0; in < g.seg; in += 32)
                kernel_grad_tile(&t, o0, xoff + in, sg * g.seg + in, (int)(g.seg - in < 32 ? g.seg - in : 32),
                                 (int)(o1 - o0));
        }
    }
}

/* The windows lie inside the image: no padding is ever read. */
static bool windows_inside(const nb_window *w)
{
    return w->OH > 0 && w->OW > 0 && !nb_window_reads_padding(w);
}

#endif

bool nb_conv_inplace_usable(const nb_window *w, int64_t O, int64_t m, bool bias)
{
#ifdef NB_HAVE_SGEMM_AVX512
    const int64_t P = (int64_t)w->fh * w->fw * w->C;
    (void)bias;
    return O > 0 && P > 0 && windows_inside(w) && nb_sgemm_avx512_usable() &&
           nb_gemm_inplace_allowed(false, false, m, O, P);
#else
    (void)w, (void)O, (void)m, (void)bias;
    return false;
#endif
}

int64_t nb_conv_inplace_packed_reals(const nb_window *w, int64_t O)
{
    return (O + 31) / 32 * 32 * ((int64_t)w->fh * w->fw * w->C);
}

void nb_conv_inplace_pack(const nb_window *w, int64_t O, const nb_real *kmat, nb_real *packed)
{
    const int64_t P = (int64_t)w->fh * w->fw * w->C;
    for (int64_t jr = 0; jr < O; jr += 32) {
        nb_real *panel = packed + jr * P;
        for (int64_t k = 0; k < P; k++)
            for (int64_t j = 0; j < 32; j++) panel[k * 32 + j] = jr + j < O ? kmat[k * O + jr + j] : 0;
    }
}

void nb_conv_inplace_rows(const nb_window *w, int64_t O, const nb_real *x, const nb_real *packed,
                          const nb_real *bias, bool relu, int64_t r0, int64_t r1, nb_real *y)
{
#ifdef NB_HAVE_SGEMM_AVX512
    conv_rows(w, O, x, packed, bias, relu, r0, r1, y);
#else
    (void)w, (void)O, (void)x, (void)packed, (void)bias, (void)relu, (void)r0, (void)r1, (void)y;
#endif
}


bool nb_conv_kernel_grad_usable(const nb_window *w, int64_t O, int64_t m)
{
#ifdef NB_HAVE_SGEMM_AVX512
    const int64_t P = (int64_t)w->fh * w->fw * w->C, seg = w->dilation == 1 ? (int64_t)w->fw * w->C : w->C;
    return O > 0 && P > 0 && seg >= 16 && windows_inside(w) && nb_sgemm_avx512_usable() &&
           nb_gemm_inplace_allowed(true, false, O, P, m);
#else
    (void)w, (void)O, (void)m;
    return false;
#endif
}

void nb_conv_kernel_grad_rows(const nb_window *w, int64_t O, const nb_real *x, const nb_real *dz, int64_t rows,
                              nb_real *dkt)
{
#ifdef NB_HAVE_SGEMM_AVX512
    kernel_grad_rows(w, O, x, dz, rows, dkt);
#else
    (void)w, (void)O, (void)x, (void)dz, (void)rows, (void)dkt;
#endif
}
