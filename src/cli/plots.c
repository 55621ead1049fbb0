/* Pictures shared by commands that draw as a side job: a Jacobian as a PNG
 * heatmap (nabla jacobian --png), the path of gradient descent (nabla demo gd
 * --plot) and training curves (nabla train --plot). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nb_status cli_matrix_png(const char *path, const nb_real *data, int64_t rows, int64_t cols, const char *title,
                         const char *subtitle)
{
    int sx = (int)(640 / cols), sy = (int)(360 / rows);
    sx = sx < 1 ? 1 : sx > 32 ? 32 : sx;
    sy = sy < 1 ? 1 : sy > 32 ? 32 : sy;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < rows * cols; i++)
        if (isfinite(data[i])) lo = fmin(lo, data[i]), hi = fmax(hi, data[i]);
    if (!(lo <= hi)) lo = hi = 0;
    double L = fmax(fabs(lo), fabs(hi));
    nb_image *h = NULL, *pic = NULL;
    nb_status s = nb_heatmap(data, rows, cols, NB_CMAP_DIVERGING, -L, L > 0 ? L : 1, sx, sy, &h);
    if (s) return s;
    static const unsigned char white[3] = {255, 255, 255}, ink[3] = {30, 30, 30}, frame[3] = {120, 120, 120};
    char range[96];
    snprintf(range, sizeof range, "min %.4g   max %.4g   (white = 0)", lo, hi);
    int width = h->width + 32, tw;
    if ((tw = nb_text_width(title, 2) + 32) > width) width = tw;
    if ((tw = nb_text_width(subtitle, 2) + 32) > width) width = tw;
    if (width < 420) width = 420;
    const int head = 12 + 20 + 22 + 8, foot = 80;
    pic = nb_image_new(width, head + h->height + 2 + foot, 3, white);
    if (!pic) {
        nb_image_free(h);
        return NB_ERR_NOMEM;
    }
    nb_image_text(pic, 16, 12, title, 2, ink);
    nb_image_text(pic, 16, 12 + 22, subtitle, 2, ink);
    nb_image_fill_rect(pic, 15, head - 1, h->width + 2, h->height + 2, frame);
    nb_image_paste(pic, h, 16, head);
    int by = head + h->height + 14;
    s = nb_colorbar(pic, 16, by, 300, 14, NB_CMAP_DIVERGING, -L, L > 0 ? L : 1, 2);
    if (!s) nb_image_text(pic, 16, by + 14 + 28, range, 2, ink);
    if (!s) s = nb_image_write_png(path, pic);
    nb_image_free(h);
    nb_image_free(pic);
    return s;
}

nb_status cli_gd_svg(const char *path, const double *xs, int n, double alpha)
{
    double R = 1;
    for (int i = 0; i < n; i++)
        if (isfinite(xs[i])) R = fmax(R, fabs(xs[i]));
    R *= 1.1;
    enum { M = 201 };
    double cx[M], cy[M];
    for (int i = 0; i < M; i++) cx[i] = -R + 2 * R * i / (M - 1), cy[i] = 2 * cx[i] * cx[i];
    double *fy = malloc((size_t)(n > 0 ? n : 1) * sizeof *fy);
    if (!fy) return nb_set_error(NB_ERR_NOMEM, "demo gd: out of memory for the plot");
    for (int i = 0; i < n; i++) fy[i] = 2 * xs[i] * xs[i];
    char title[128], label[64];
    snprintf(title, sizeof title, "Gradient descent on f(x) = 2x^2, alpha = %g", alpha);
    snprintf(label, sizeof label, "x_k (%d steps from x_0 = %g)", n - 1, n ? xs[0] : 0);
    nb_plot_series se[2] = {{.label = "f(x) = 2x^2", .x = cx, .y = cy, .n = M, .color = "#888888"},
                            {.label = label, .x = xs, .y = fy, .n = n, .color = "#d1495b", .markers = 1}};
    nb_plot p = {.title = title, .xlabel = "x", .ylabel = "f(x)", .series = se, .nseries = 2, .width = 640,
                 .height = 440};
    nb_status s = nb_svg_plot(path, &p, 1);
    free(fy);
    return s;
}

void cli_curves_free(cli_curves *c)
{
    free(c->v);
    free(c->sharp);
    memset(c, 0, sizeof *c);
}

int cli_curves_add(cli_curves *c, const nb_epoch_stats *s)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        double *v = realloc(c->v, (size_t)cap * 5 * sizeof *v);
        if (!v) return 1;
        c->v = v, c->cap = cap;
    }
    double *r = c->v + (size_t)c->n * 5;
    r[0] = s->epoch + 1, r[1] = s->loss, r[2] = s->accuracy, r[3] = s->val_loss, r[4] = s->val_accuracy;
    c->n++;
    return 0;
}

int cli_curves_add_sharpness(cli_curves *c, const nb_sharpness *s)
{
    if (c->sharp_n == c->sharp_cap) {
        int cap = c->sharp_cap ? 2 * c->sharp_cap : 16;
        double *v = realloc(c->sharp, (size_t)cap * 3 * sizeof *v);
        if (!v) return 1;
        c->sharp = v, c->sharp_cap = cap;
    }
    double *r = c->sharp + (size_t)c->sharp_n * 3;
    r[0] = (double)s->step, r[1] = s->lambda_max, r[2] = 2 / s->lr;
    c->sharp_n++;
    return 0;
}

/* The third panel of train --plot --sharpness: lambda_max per step and the
 * edge of stability 2 / lr (dashed), from 0 up. col: 3 columns of n. */
static nb_plot sharpness_panel(const double *col, int n, nb_plot_series *se)
{
    double top = 0, low = 0; /* a Hessian's top |eigenvalue| may be negative */
    for (int i = 0; i < 2 * n; i++)
        if (isfinite(col[n + i])) top = fmax(top, col[n + i]), low = fmin(low, col[n + i]);
    se[0] = (nb_plot_series){.label = "lambda_max", .x = col, .y = col + n, .n = n, .markers = n <= 60,
                             .color = "#d1495b"};
    se[1] = (nb_plot_series){.label = "2 / lr", .x = col, .y = col + 2 * n, .n = n, .dashed = 1, .color = "#333333"};
    return (nb_plot){.title = "Sharpness (top Hessian eigenvalue)", .xlabel = "step", .ylabel = "lambda_max",
                     .series = se, .nseries = 2, .xmin = 0, .xmax = n ? fmax(col[n - 1], 1) : 1, .ymin = 1.15 * low,
                     .ymax = top > 0 ? 1.15 * top : 1};
}

nb_status cli_curves_svg(const char *path, const cli_curves *c)
{
    int n = c->n;
    double *col = malloc((size_t)(n ? n : 1) * 5 * sizeof *col);
    if (!col) return nb_set_error(NB_ERR_NOMEM, "train --plot: out of memory");
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < n; i++) col[k * n + i] = c->v[(size_t)i * 5 + k];
    int has_val = n > 0 && isfinite(col[3 * n]);
    nb_plot_series loss[2] = {{.label = "training", .x = col, .y = col + n, .n = n, .markers = n <= 60},
                              {.label = "validation", .x = col, .y = col + 3 * n, .n = n, .markers = n <= 60, .dashed = 1}};
    nb_plot_series acc[2] = {{.label = "training", .x = col, .y = col + 2 * n, .n = n, .markers = n <= 60},
                             {.label = "validation", .x = col, .y = col + 4 * n, .n = n, .markers = n <= 60, .dashed = 1}};
    double x0 = n ? col[0] - 0.5 : 0, x1 = n ? col[n - 1] + 0.5 : 1;
    nb_plot p[2] = {{.title = "Loss per epoch", .xlabel = "epoch", .ylabel = "loss (cross-entropy)", .series = loss,
                     .nseries = has_val ? 2 : 1, .xmin = x0, .xmax = x1},
                    {.title = "Accuracy per epoch", .xlabel = "epoch", .ylabel = "accuracy", .series = acc,
                     .nseries = has_val ? 2 : 1, .xmin = x0, .xmax = x1}};
    const int m = c->sharp_n;
    double *sc = m ? malloc((size_t)m * 3 * sizeof *sc) : NULL;
    if (m && !sc) {
        free(col);
        return nb_set_error(NB_ERR_NOMEM, "train --plot: out of memory");
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m; i++) sc[k * m + i] = c->sharp[(size_t)i * 3 + k];
    nb_plot_series sharp[2];
    nb_plot all[3] = {p[0], p[1], m ? sharpness_panel(sc, m, sharp) : p[1]};
    nb_status s = nb_svg_plot(path, all, m ? 3 : 2);
    free(sc);
    free(col);
    return s;
}
