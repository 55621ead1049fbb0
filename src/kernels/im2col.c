/* im2col and col2im for NHWC images: the lowering that turns a convolution
 * into one GEMM. For image n and output pixel (i, j), the row
 *   cols[(n, i, j), (p, q, c)] = x[n, i*s + p*d - pt, j*s + q*d - pl, c]
 * (zero in the padding) holds the fh x fw x C window the kernel sees there.
 * In NHWC the C values of one pixel are contiguous, and with dilation 1 so
 * are the fw pixels of one window row: the inner loops copy runs of fw*C
 * values, which keeps C = 1 (the first layer of an image network) fast too.
 * col2im is the transpose map: it adds every row back onto the pixels it was
 * read from, so col2im(dcols) is the VJP of im2col. */
#include "kernels.h"

int64_t nb_window_dim(int64_t in, int f, int stride, int dilation, nb_padding padding, int *pad_before)
{
    const int64_t eff = (int64_t)(f - 1) * dilation + 1;
    *pad_before = 0;
    if (padding == NB_PAD_SAME) {
        const int64_t out = (in + stride - 1) / stride;
        int64_t total = out > 0 ? (out - 1) * stride + eff - in : 0;
        if (total < 0) total = 0;
        *pad_before = (int)(total / 2);
        return out;
    }
    if (eff > in) return -1;
    return (in - eff) / stride + 1;
}

void nb_im2col(const nb_window *w, int64_t nimg, const nb_real *x, nb_real *cols)
{
    const int64_t H = w->H, W = w->W, C = w->C, OH = w->OH, OW = w->OW;
    const int fh = w->fh, fw = w->fw, s = w->stride, d = w->dilation, pt = w->pad_top, pl = w->pad_left;
    const int64_t run = fw * C, P = fh * run;
#pragma omp parallel for collapse(2) schedule(static) if (nimg * OH * OW * P > NB_PAR_MAP)
    for (int64_t n = 0; n < nimg; n++) {
        for (int64_t i = 0; i < OH; i++) {
            const nb_real *xn = x + n * H * W * C;
            nb_real *dst = cols + (n * OH + i) * OW * P;
            for (int64_t j = 0; j < OW; j++, dst += P) {
                const int64_t iw0 = j * s - pl;
                const bool row_inside = iw0 >= 0 && iw0 + (int64_t)(fw - 1) * d < W;
                for (int p = 0; p < fh; p++) {
                    const int64_t ih = i * s + (int64_t)p * d - pt;
                    nb_real *dp = dst + p * run;
                    if (ih < 0 || ih >= H) {
                        for (int64_t t = 0; t < run; t++) dp[t] = 0;
                        continue;
                    }
                    const nb_real *xr = xn + ih * W * C;
                    if (d == 1 && row_inside) { /* fw pixels in a row: one contiguous run */
                        const nb_real *src = xr + iw0 * C;
                        for (int64_t t = 0; t < run; t++) dp[t] = src[t];
                        continue;
                    }
                    for (int q = 0; q < fw; q++) {
                        const int64_t iw = iw0 + (int64_t)q * d;
                        nb_real *dq = dp + q * C;
                        if (iw < 0 || iw >= W) {
                            for (int64_t c = 0; c < C; c++) dq[c] = 0;
                        } else {
                            const nb_real *src = xr + iw * C;
                            for (int64_t c = 0; c < C; c++) dq[c] = src[c];
                        }
                    }
                }
            }
        }
    }
}

bool nb_window_reads_padding(const nb_window *w)
{
    return w->pad_top > 0 || w->pad_left > 0 ||
           (w->OH > 0 && (w->OH - 1) * w->stride + (int64_t)(w->fh - 1) * w->dilation >= w->H) ||
           (w->OW > 0 && (w->OW - 1) * w->stride + (int64_t)(w->fw - 1) * w->dilation >= w->W);
}

/* The buffer holds exactly the pixels the band's windows span: buffer row t
 * is image row r0*s - pt + t, buffer column u image column u - pl. */
nb_window nb_window_padded_band(const nb_window *w, int64_t r0, int64_t r1)
{
    nb_window b = *w;
    b.OH = r1 > r0 ? r1 - r0 : 0;
    b.H = b.OH > 0 ? (b.OH - 1) * w->stride + (int64_t)(w->fh - 1) * w->dilation + 1 : 0;
    b.W = w->OW > 0 ? (w->OW - 1) * w->stride + (int64_t)(w->fw - 1) * w->dilation + 1 : 0;
    b.pad_top = b.pad_left = 0;
    return b;
}

void nb_pad_band(const nb_window *w, const nb_real *x, int64_t r0, int64_t r1, nb_real *buf)
{
    const nb_window b = nb_window_padded_band(w, r0, r1);
    const int64_t C = w->C, h0 = r0 * w->stride - w->pad_top;
    /* buffer columns [u0, u1) hold image columns [u0 - pl, u1 - pl) */
    int64_t u0 = w->pad_left > 0 ? w->pad_left : 0, u1 = w->pad_left + w->W;
    if (u0 > b.W) u0 = b.W;
    if (u1 > b.W) u1 = b.W;
    if (u1 < u0) u1 = u0;
    for (int64_t t = 0; t < b.H; t++) {
        nb_real *row = buf + t * b.W * C;
        const int64_t ih = h0 + t;
        if (ih < 0 || ih >= w->H) {
            memset(row, 0, (size_t)(b.W * C) * sizeof(nb_real));
            continue;
        }
        memset(row, 0, (size_t)(u0 * C) * sizeof(nb_real));
        memcpy(row + u0 * C, x + (ih * w->W + u0 - w->pad_left) * C, (size_t)((u1 - u0) * C) * sizeof(nb_real));
        memset(row + u1 * C, 0, (size_t)((b.W - u1) * C) * sizeof(nb_real));
    }
}

void nb_col2im(const nb_window *w, int64_t nimg, const nb_real *cols, nb_real *x, bool accumulate)
{
    const int64_t H = w->H, W = w->W, C = w->C, OH = w->OH, OW = w->OW;
    const int fh = w->fh, fw = w->fw, s = w->stride, d = w->dilation, pt = w->pad_top, pl = w->pad_left;
    const int64_t run = fw * C, P = fh * run;
    /* One image per iteration: windows overlap inside an image, never across. */
#pragma omp parallel for schedule(static) if (nimg * OH * OW * P > NB_PAR_MAP)
    for (int64_t n = 0; n < nimg; n++) {
        nb_real *xn = x + n * H * W * C;
        if (!accumulate) memset(xn, 0, (size_t)(H * W * C) * sizeof(nb_real));
        const nb_real *src = cols + n * OH * OW * P;
        for (int64_t i = 0; i < OH; i++) {
            for (int64_t j = 0; j < OW; j++, src += P) {
                const int64_t iw0 = j * s - pl;
                const bool row_inside = iw0 >= 0 && iw0 + (int64_t)(fw - 1) * d < W;
                for (int p = 0; p < fh; p++) {
                    const int64_t ih = i * s + (int64_t)p * d - pt;
                    if (ih < 0 || ih >= H) continue;
                    const nb_real *sp = src + p * run;
                    nb_real *xr = xn + ih * W * C;
                    if (d == 1 && row_inside) {
                        nb_real *dst = xr + iw0 * C;
                        for (int64_t t = 0; t < run; t++) dst[t] += sp[t];
                        continue;
                    }
                    for (int q = 0; q < fw; q++) {
                        const int64_t iw = iw0 + (int64_t)q * d;
                        if (iw < 0 || iw >= W) continue;
                        nb_real *dst = xr + iw * C;
                        const nb_real *sq = sp + q * C;
                        for (int64_t c = 0; c < C; c++) dst[c] += sq[c];
                    }
                }
            }
        }
    }
}
