/* Line plots written as SVG text: axes with "nice" ticks (1, 2 or 5 times a
 * power of ten), numbers, grid lines, several series, a legend, a title and
 * axis labels. Several plots can sit side by side in one file. */
#include "../core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->len + (size_t)n) cap *= 2;
        char *q = realloc(b->s, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->s = q, b->cap = cap;
    }
}

/* The length of the UTF-8 sequence at u when it is well formed and XML 1.0
 * can hold the character (no overlong forms, surrogates, U+FFFE, U+FFFF or
 * values past U+10FFFF); 0 otherwise. u[0] >= 0x80. */
static int utf8_len(const unsigned char *u)
{
    unsigned lead = u[0];
    int len;
    if (lead >= 0xC2 && lead <= 0xDF) len = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) len = 3;
    else if (lead >= 0xF0 && lead <= 0xF4) len = 4;
    else return 0; /* a continuation byte, or a lead no valid sequence has */
    unsigned long cp = lead & (0x7Fu >> len);
    for (int k = 1; k < len; k++) {
        if ((u[k] & 0xC0) != 0x80) return 0; /* also stops at the terminating NUL */
        cp = cp << 6 | (u[k] & 0x3Fu);
    }
    static const unsigned long lowest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < lowest[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) return 0;
    return len;
}

/* User text as XML character data or as an attribute value (either
 * quote): &, <, >, " and ' escaped; tab, newline and carriage return as
 * character references (attributes keep them too); what XML 1.0 cannot hold
 * (other control characters, bytes that are not UTF-8) as U+FFFD. The file
 * stays well-formed whatever the caller passes. */
static void sb_text(sbuf *b, const char *t)
{
    const unsigned char *u = (const unsigned char *)t;
    while (u && *u) {
        const char *esc = NULL;
        int len = 1;
        switch (*u) {
        case '&': esc = "&amp;"; break;
        case '<': esc = "&lt;"; break;
        case '>': esc = "&gt;"; break;
        case '"': esc = "&quot;"; break;
        case '\'': esc = "&apos;"; break;
        case '\t': esc = "&#9;"; break;
        case '\n': esc = "&#10;"; break;
        case '\r': esc = "&#13;"; break;
        default:
            if (*u < 0x20) esc = "\xEF\xBF\xBD";
            else if (*u >= 0x80 && !(len = utf8_len(u))) esc = "\xEF\xBF\xBD", len = 1;
        }
        if (esc) sb_printf(b, "%s", esc);
        else sb_printf(b, "%.*s", len, (const char *)u);
        u += len;
    }
}

/* A colour as SVG takes it, and nothing that could leave its attribute:
 * #rgb, #rgba, #rrggbb or #rrggbbaa; a keyword of 1 to 32 ASCII letters (red,
 * steelblue, none, currentColor); or rgb(), rgba(), hsl() or hsla() of
 * digits, '.', ',', '%', '+', '-' and spaces. */
static int plausible_color(const char *c)
{
    size_t n = strlen(c), k = 0;
    if (c[0] == '#') {
        if (n != 4 && n != 5 && n != 7 && n != 9) return 0;
        for (size_t i = 1; i < n; i++)
            if (!strchr("0123456789abcdefABCDEF", c[i])) return 0;
        return 1;
    }
    while ((c[k] >= 'a' && c[k] <= 'z') || (c[k] >= 'A' && c[k] <= 'Z')) k++;
    if (k == n) return n >= 1 && n <= 32;
    if (n > 64 || c[k] != '(' || c[n - 1] != ')') return 0;
    if (!((k == 3 && (!strncmp(c, "rgb", 3) || !strncmp(c, "hsl", 3))) ||
          (k == 4 && (!strncmp(c, "rgba", 4) || !strncmp(c, "hsla", 4)))))
        return 0;
    for (size_t i = k + 1; i + 1 < n; i++)
        if (!strchr("0123456789.,%+- ", c[i])) return 0;
    return 1;
}

static const char *palette[] = {"#1f5fa8", "#d1495b", "#2a9d5c", "#e8a33d", "#7b4fa0", "#3a3a3a"};

/* A tick step of 1, 2 or 5 times a power of ten giving about 5 intervals. */
static double nice_step(double range)
{
    double raw = range / 5, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* The ticks at multiples of step within [lo, hi]: how many (at most 100) and,
 * in *k0, the first one's multiple. None when step is not a positive finite
 * number or is too fine for the magnitude of the range (multiples past 1e15
 * could not be told apart in a double, and stepping would never advance). */
static int tick_count(double lo, double hi, double step, double *k0)
{
    *k0 = 0;
    if (!(step > 0) || !isfinite(step)) return 0;
    double a = ceil(lo / step - 1e-9), z = floor(hi / step + 1e-9);
    if (!(fabs(a) <= 1e15 && fabs(z) <= 1e15 && z >= a && z - a < 100)) return 0;
    *k0 = a;
    return (int)(z - a) + 1;
}

static void fmt_tick(double v, double step, char *buf, size_t n)
{
    v = round(v / step) * step;
    if (fabs(v) < step * 1e-9) v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) >= 1e6 || (v != 0 && fabs(v) < 1e-4)) snprintf(buf, n, "%.3g", v);
    else snprintf(buf, n, "%.*f", dec > 10 ? 10 : dec, v);
}

/* Data range of one axis over all series (finite values only). */
static void data_range(const nb_plot *p, int axis, double *lo, double *hi)
{
    *lo = INFINITY, *hi = -INFINITY;
    for (int s = 0; s < p->nseries; s++) {
        const nb_plot_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            double v = axis == 0 ? (se->x ? se->x[i] : i) : se->y[i];
            if (isfinite(v)) *lo = fmin(*lo, v), *hi = fmax(*hi, v);
        }
    }
    if (!(*lo <= *hi)) *lo = 0, *hi = 1;
    /* equal, or too close for their magnitude to draw ticks between */
    if (!(*hi - *lo > 1e-12 * fmax(fabs(*lo), fabs(*hi))) || *hi - *lo < 1e-300) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d, *hi += d;
    }
}

/* Whether every finite x of every series is a whole number (epochs, steps). */
static int integer_x(const nb_plot *p)
{
    for (int s = 0; s < p->nseries; s++) {
        const nb_plot_series *se = &p->series[s];
        for (int i = 0; se->x && i < se->n; i++)
            if (isfinite(se->x[i]) && se->x[i] != floor(se->x[i])) return 0;
    }
    return 1;
}

/* One plot's area in the picture and its axes' ranges and tick steps. */
typedef struct {
    int id;
    double px0, px1, py0, py1; /* the plot area, in SVG units */
    double xlo, xhi, ylo, yhi, xstep, ystep;
} plot_frame;

static double frame_x(const plot_frame *f, double v)
{
    return f->px0 + (v - f->xlo) / (f->xhi - f->xlo) * (f->px1 - f->px0);
}

static double frame_y(const plot_frame *f, double v)
{
    return f->py1 - (v - f->ylo) / (f->yhi - f->ylo) * (f->py1 - f->py0);
}

/* One axis: the given range, or the data's widened to whole ticks. */
static void axis_range(const nb_plot *p, int axis, double min, double max, double *lo, double *hi, double *step)
{
    if (min < max) *lo = min, *hi = max;
    else data_range(p, axis, lo, hi);
    *step = nice_step(*hi - *lo);
    /* integer data (epochs) get integer ticks: no "1.5 epochs" */
    if (axis == 0 && *step < 1 && integer_x(p)) *step = 1;
    if (!(min < max) && *step > 0 && isfinite(*step))
        *lo = floor(*lo / *step + 1e-9) * *step, *hi = ceil(*hi / *step - 1e-9) * *step;
}

static plot_frame frame_of(const nb_plot *p, int id, double ox, double W, double H)
{
    const double ml = 72, mr = 24, mt = p->title ? 44 : 20, mb = p->xlabel ? 58 : 36;
    plot_frame f = {id, ox + ml, ox + W - mr, mt, H - mb, 0, 0, 0, 0, 0, 0};
    axis_range(p, 0, p->xmin, p->xmax, &f.xlo, &f.xhi, &f.xstep);
    axis_range(p, 1, p->ymin, p->ymax, &f.ylo, &f.yhi, &f.ystep);
    return f;
}

/* Grid lines and ticks with their numbers, on both axes. */
static void draw_ticks(sbuf *b, const plot_frame *f)
{
    char num[48];
    double k0;
    for (int i = 0, nt = tick_count(f->xlo, f->xhi, f->xstep, &k0); i < nt; i++) {
        double v = (k0 + i) * f->xstep, x = frame_x(f, v);
        fmt_tick(v, f->xstep, num, sizeof num);
        sb_printf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x,
                  f->py0, x, f->py1);
        sb_printf(b, "<line class=\"tick\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x,
                  f->py1, x, f->py1 + 5);
        sb_printf(b, "<text class=\"xtick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n", x,
                  f->py1 + 19, num);
    }
    for (int i = 0, nt = tick_count(f->ylo, f->yhi, f->ystep, &k0); i < nt; i++) {
        double v = (k0 + i) * f->ystep, y = frame_y(f, v);
        fmt_tick(v, f->ystep, num, sizeof num);
        sb_printf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                  f->px0, y, f->px1, y);
        sb_printf(b, "<line class=\"tick\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                  f->px0 - 5, y, f->px0, y);
        sb_printf(b, "<text class=\"ytick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%s</text>\n",
                  f->px0 - 8, y + 4, num);
    }
}

/* The series as polylines (and markers), clipped to the plot area; points
 * far away are clamped so that a diverging series still draws. */
static void draw_series(sbuf *b, const nb_plot *p, const plot_frame *f)
{
    for (int s = 0; s < p->nseries; s++) {
        const nb_plot_series *se = &p->series[s];
        const char *col = se->color ? se->color : palette[s % 6];
        sb_printf(b, "<polyline class=\"series\" data-label=\"");
        sb_text(b, se->label ? se->label : "");
        sb_printf(b, "\" clip-path=\"url(#area%d)\" fill=\"none\" stroke=\"", f->id);
        sb_text(b, col);
        sb_printf(b, "\" stroke-width=\"2.2\"%s stroke-linejoin=\"round\" points=\"",
                  se->dashed ? " stroke-dasharray=\"7 4\"" : "");
        int first = 1;
        for (int i = 0; i < se->n; i++) {
            double xv = se->x ? se->x[i] : i, yv = se->y[i];
            if (!isfinite(xv) || !isfinite(yv)) continue;
            double X = fmax(-1e5, fmin(1e5, frame_x(f, xv))), Y = fmax(-1e5, fmin(1e5, frame_y(f, yv)));
            sb_printf(b, "%s%.2f,%.2f", first ? "" : " ", X, Y);
            first = 0;
        }
        sb_printf(b, "\"/>\n");
        for (int i = 0; se->markers && i < se->n; i++) {
            double xv = se->x ? se->x[i] : i, yv = se->y[i];
            if (!isfinite(xv) || !isfinite(yv)) continue;
            sb_printf(b, "<circle class=\"marker\" clip-path=\"url(#area%d)\" cx=\"%.2f\" cy=\"%.2f\" r=\"4\" ", f->id,
                      fmax(-1e5, fmin(1e5, frame_x(f, xv))), fmax(-1e5, fmin(1e5, frame_y(f, yv))));
            sb_printf(b, "fill=\"");
            sb_text(b, col);
            sb_printf(b, "\" stroke=\"#ffffff\" stroke-width=\"1\"/>\n");
        }
    }
}

/* The corner (top right, bottom right, top left, bottom left) for a legend
 * of lw x lh that covers the fewest data points, into (*lx, *ly). */
static void legend_corner(const nb_plot *p, const plot_frame *f, double lw, double lh, double *lx, double *ly)
{
    long best = -1;
    for (int corner = 0; corner < 4; corner++) {
        double cx = corner < 2 ? f->px1 - lw - 8 : f->px0 + 8, cy = corner % 2 == 0 ? f->py0 + 8 : f->py1 - lh - 8;
        long hits = 0;
        for (int q = 0; q < p->nseries; q++)
            for (int i = 0; i < p->series[q].n; i++) {
                double X = frame_x(f, p->series[q].x ? p->series[q].x[i] : i), Y = frame_y(f, p->series[q].y[i]);
                hits += X >= cx - 6 && X <= cx + lw + 6 && Y >= cy - 6 && Y <= cy + lh + 6;
            }
        if (best < 0 || hits < best) best = hits, *lx = cx, *ly = cy;
    }
}

/* The legend of the labelled series, in the emptiest corner. */
static void draw_legend(sbuf *b, const nb_plot *p, const plot_frame *f)
{
    double nleg = 0, maxlen = 0; /* doubles: no int to overflow */
    for (int s = 0; s < p->nseries; s++)
        if (p->series[s].label) {
            nleg++;
            double l = (double)strlen(p->series[s].label);
            if (l > maxlen) maxlen = l;
        }
    if (nleg == 0) return;
    double lw = 44 + maxlen * 7.2, lh = 10 + nleg * 19, lx = f->px1 - lw - 8, ly = f->py0 + 8;
    legend_corner(p, f, lw, lh, &lx, &ly);
    sb_printf(b, "<g class=\"legend\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" "
                 "fill-opacity=\"0.9\" stroke=\"#999\"/>\n", lx, ly, lw, lh);
    double k = 0;
    for (int s = 0; s < p->nseries; s++) {
        const nb_plot_series *se = &p->series[s];
        if (!se->label) continue;
        double yy = ly + 15 + k * 19;
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"", lx + 8, yy, lx + 32, yy);
        sb_text(b, se->color ? se->color : palette[s % 6]);
        sb_printf(b, "\" stroke-width=\"2.5\"%s/>\n", se->dashed ? " stroke-dasharray=\"7 4\"" : "");
        sb_printf(b, "<text class=\"legend-text\" x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", lx + 38, yy + 4);
        sb_text(b, se->label);
        sb_printf(b, "</text>\n");
        k++;
    }
    sb_printf(b, "</g>\n");
}

/* The title and the axis labels. */
static void draw_labels(sbuf *b, const nb_plot *p, const plot_frame *f, double ox, double H)
{
    if (p->title) {
        sb_printf(b, "<text class=\"title\" x=\"%.1f\" y=\"26\" text-anchor=\"middle\" font-size=\"16\" "
                     "font-weight=\"bold\">", (f->px0 + f->px1) / 2);
        sb_text(b, p->title);
        sb_printf(b, "</text>\n");
    }
    if (p->xlabel) {
        sb_printf(b, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">",
                  (f->px0 + f->px1) / 2, H - 14);
        sb_text(b, p->xlabel);
        sb_printf(b, "</text>\n");
    }
    if (p->ylabel) {
        double cx = ox + 18, cy = (f->py0 + f->py1) / 2;
        sb_printf(b, "<text class=\"ylabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                     "transform=\"rotate(-90 %.1f %.1f)\">", cx, cy, cx, cy);
        sb_text(b, p->ylabel);
        sb_printf(b, "</text>\n");
    }
}

/* One plot, W x H at x offset ox, as an SVG group. */
static void render(sbuf *b, const nb_plot *p, int id, double ox, double W, double H)
{
    const plot_frame f = frame_of(p, id, ox, W, H);
    const double w = f.px1 - f.px0, h = f.py1 - f.py0;
    sb_printf(b, "<g class=\"plot\">\n");
    sb_printf(b, "<clipPath id=\"area%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n", id,
              f.px0, f.py0, w, h);
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" stroke=\"none\"/>\n",
              f.px0, f.py0, w, h);
    draw_ticks(b, &f);
    draw_series(b, p, &f);
    sb_printf(b, "<rect class=\"axes\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                 "stroke=\"#333\"/>\n", f.px0, f.py0, w, h);
    draw_legend(b, p, &f);
    draw_labels(b, p, &f, ox, H);
    sb_printf(b, "</g>\n");
}

nb_status nb_svg_plot(const char *path, const nb_plot *plots, int nplots)
{
    if (!path || !plots || nplots < 1) return nb_fail(NB_ERR_ARG, "svg_plot: NULL path or no plots");
    double W = 0, H = 0;
    for (int i = 0; i < nplots; i++) {
        const nb_plot *p = &plots[i];
        if (p->nseries < 0 || (p->nseries && !p->series))
            return nb_fail(NB_ERR_ARG, "svg_plot: plot %d: bad series array", i);
        for (int s = 0; s < p->nseries; s++) {
            const nb_plot_series *se = &p->series[s];
            if (se->n < 0 || (se->n && !se->y))
                return nb_fail(NB_ERR_ARG, "svg_plot: plot %d series %d: no y values", i, s);
            if (se->color && !plausible_color(se->color))
                return nb_fail(NB_ERR_ARG,
                               "svg_plot: plot %d series %d: color '%.40s%s' is not a colour: use #rrggbb, #rgb, a "
                               "name such as steelblue, rgb(r, g, b), or NULL for the palette",
                               i, s, se->color, strlen(se->color) > 40 ? "..." : "");
        }
        W += p->width > 0 ? p->width : 560;
        H = fmax(H, p->height > 0 ? p->height : 400);
    }
    sbuf b = {0};
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                  "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" fill=\"#222\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n", W, H, W, H);
    double ox = 0;
    for (int i = 0; i < nplots; i++) {
        double w = plots[i].width > 0 ? plots[i].width : 560;
        render(&b, &plots[i], i, ox, w, H);
        ox += w;
    }
    sb_printf(&b, "</svg>\n");
    if (b.oom) {
        free(b.s);
        return nb_fail(NB_ERR_NOMEM, "svg_plot: out of memory writing '%s'", path);
    }
    nb_status s = nb_write_file_atomic(path, b.s, b.len);
    free(b.s);
    return s;
}
