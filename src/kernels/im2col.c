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
