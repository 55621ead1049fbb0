/* nabla boundary: the decision boundary of a classifier of 2-D points, as
 * a heatmap of its predicted class probability over the plane with the data
 * set's points drawn on top (PNG through src/viz, or SVG). */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *data, *out;
    int split;
    long long size;
    cli_csv_opts csv;
} boundary_args;

#define F(field) offsetof(boundary_args, field)
static const cli_opt boundary_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model of 2-D points (input 2) written by 'nabla train'",
     CLI_REQUIRED, 0, 0, NULL},
    {"--data", NULL, CLI_STR, F(data), "D", NULL,
     "the points: circles, xor, spiral, gaussians, or a CSV file of 2 inputs", CLI_REQUIRED, 0, 0, NULL},
    {"--split", NULL, CLI_CHOICE, F(split), NULL, "test", "the split whose points are drawn", 0, 0, 0, cli_splits},
    {"--out", "-o", CLI_STR, F(out), "F", NULL, "the picture: a .png or .svg file", CLI_REQUIRED, 0, 0, NULL},
    {"--size", NULL, CLI_INT, F(size), "PX", "400", "width and height of the plane in pixels", 0, 32, 4096, NULL},
    CLI_CSV_OPTS(boundary_args, csv),
    CLI_TOY_COUNT_OPT(boundary_args, csv),
};
#undef F

static const cli_spec boundary_spec = {
    "boundary",
    "--model M.safetensors --data circles|xor|spiral|gaussians|FILE.csv -o b.png|b.svg [options]",
    "Draws what a classifier of 2-D points decides over the plane around the data: with two\n"
    "classes the probability of class 1 (blue 0, white 0.5 = the decision boundary, red 1),\n"
    "with more the colour of the most probable class, paler where it is less sure. The\n"
    "data set's points are drawn on top in their true class's colour.\n",
    boundary_opts,
    CLI_NOPTS(boundary_opts),
    "Example: nabla train --data circles --model 'dense 16 tanh; dense 2' --epochs 30 --lr 0.01 --out c.safetensors\n"
    "         nabla boundary --model c.safetensors --data circles -o c.png\n"};

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int parse_args(int argc, char **argv, boundary_args *a)
{
    *a = (boundary_args){0};
    int r = cli_parse(&boundary_spec, argc, argv, a);
    if (r >= 0 || (r = cli_csv_check("boundary", &a->csv)) >= 0) return r;
    if ((r = cli_toy_check("boundary", a->data, &a->csv)) >= 0) return r;
    if (!ends_with(a->out, ".png") && !ends_with(a->out, ".svg"))
        return cli_usage_error("boundary", "-o names the picture: a file ending in .png or .svg, got '%s'", a->out);
    return -1;
}

int cmd_boundary_check_args(int argc, char **argv)
{
    boundary_args a;
    return parse_args(argc, argv, &a);
}

/* The square of the plane drawn: the points' bounding box, 10% wider. */
typedef struct {
    double cx, cy, half;
    int size;
} plane;

static plane plane_of(const nb_tensor *x, int size)
{
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int64_t i = 0; i < x->shape[0]; i++)
        for (int d = 0; d < 2; d++)
            if (isfinite(x->data[2 * i + d]))
                lo[d] = fmin(lo[d], x->data[2 * i + d]), hi[d] = fmax(hi[d], x->data[2 * i + d]);
    if (!(lo[0] <= hi[0])) lo[0] = lo[1] = -1, hi[0] = hi[1] = 1; /* no finite point */
    double half = 0.55 * fmax(hi[0] - lo[0], hi[1] - lo[1]);
    if (!(half > 0)) half = 1;
    return (plane){0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), half, size};
}

/* Pixel column/row of a point (row 0 at the top: y grows upwards), kept
 * near the picture so that huge coordinates stay ints. */
static double clamp_px(const plane *p, double v)
{
    return fmin(fmax(v, -16), p->size + 16);
}
static double px(const plane *p, double x)
{
    return clamp_px(p, (x - (p->cx - p->half)) / (2 * p->half) * p->size);
}
static double py(const plane *p, double y)
{
    return clamp_px(p, ((p->cy + p->half) - y) / (2 * p->half) * p->size);
}
/* Points with NaN or Inf are not drawn. */
static int drawable(const nb_dataset *d, int64_t i)
{
    return isfinite(d->x->data[2 * i]) && isfinite(d->x->data[2 * i + 1]);
}

/* The model's class probabilities at the centres of a g x g grid over the
 * plane: *prob (g*g, C), softmax or sigmoid applied when the model ends in
 * logits. */
static nb_status grid_probabilities(nb_model *m, const plane *p, int g, nb_tensor **prob)
{
    int64_t shape[2] = {(int64_t)g * g, 2};
    nb_tensor *x = nb_tensor_new(2, shape);
    if (!x) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int r = 0; r < g; r++)
        for (int c = 0; c < g; c++) {
            x->data[2 * ((int64_t)r * g + c)] = (nb_real)(p->cx - p->half + (c + 0.5) * 2 * p->half / g);
            x->data[2 * ((int64_t)r * g + c) + 1] = (nb_real)(p->cy + p->half - (r + 0.5) * 2 * p->half / g);
        }
    nb_status s = nb_model_predict(m, x, 4096, prob);
    nb_tensor_free(x);
    if (s) return s;
    nb_tensor *y = *prob;
    const int64_t C = y->size / y->shape[0];
    const nb_activation act = nb_model_output_activation(m);
    for (int64_t i = 0; i < y->shape[0]; i++) {
        nb_real *row = y->data + i * C;
        if (C == 1 && act != NB_ACT_SIGMOID) row[0] = (nb_real)(1 / (1 + exp(-(double)row[0])));
        if (C > 1 && act != NB_ACT_SOFTMAX) {
            double mx = row[0], sum = 0;
            for (int64_t c = 1; c < C; c++)
                mx = fmax(mx, row[c]);
            for (int64_t c = 0; c < C; c++)
                sum += exp((double)row[c] - mx);
            for (int64_t c = 0; c < C; c++)
                row[c] = (nb_real)(exp((double)row[c] - mx) / sum);
        }
    }
    return NB_OK;
}

static const unsigned char palette[8][3] = {{31, 119, 180},  {214, 39, 40}, {44, 160, 44},   {255, 127, 14},
                                            {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};

/* The colour of one grid cell: P(class 1) on the diverging map (2
 * classes), else the most probable class's colour, paler when unsure. */
static void cell_rgb(const nb_real *row, int64_t C, unsigned char rgb[3])
{
    if (C <= 2) {
        nb_colormap_rgb(NB_CMAP_DIVERGING, C == 1 ? row[0] : row[1], rgb);
        return;
    }
    int64_t best = 0;
    for (int64_t c = 1; c < C; c++)
        if (row[c] > row[best]) best = c;
    const double sure = (row[best] - 1.0 / (double)C) / (1 - 1.0 / (double)C); /* 0 at uniform, 1 certain */
    for (int k = 0; k < 3; k++)
        rgb[k] = (unsigned char)lround(255 - (0.15 + 0.6 * fmax(0, sure)) * (255 - palette[best % 8][k]));
}

/* A point's colour: its class's (2 classes: dark blue, dark red). */
static void point_rgb(double label, int64_t C, unsigned char rgb[3])
{
    static const unsigned char two[2][3] = {{20, 60, 160}, {170, 20, 20}};
    const int64_t k = label >= 0 && label < 1e9 ? (int64_t)label : 0; /* no class index: the first colour */
    const unsigned char *c = C <= 2 ? two[k == 1] : palette[k % 8];
    memcpy(rgb, c, 3);
}

static nb_status write_png(const char *path, const plane *p, const nb_tensor *prob, int g, const nb_dataset *d)
{
    const unsigned char bg[3] = {255, 255, 255}, white[3] = {255, 255, 255};
    nb_image *im = nb_image_new(p->size, p->size, 3, bg);
    if (!im) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    const int64_t C = prob->size / prob->shape[0];
    for (int r = 0; r < g; r++)
        for (int c = 0; c < g; c++) {
            unsigned char rgb[3];
            cell_rgb(prob->data + ((int64_t)r * g + c) * C, C, rgb);
            nb_image_fill_rect(im, c * p->size / g, r * p->size / g, (c + 1) * p->size / g - c * p->size / g,
                               (r + 1) * p->size / g - r * p->size / g, rgb);
        }
    for (int64_t i = 0; i < d->x->shape[0]; i++) {
        if (!drawable(d, i)) continue;
        unsigned char rgb[3];
        point_rgb(d->y->data[i], C, rgb);
        const int x = (int)lround(px(p, d->x->data[2 * i])), y = (int)lround(py(p, d->x->data[2 * i + 1]));
        nb_image_fill_rect(im, x - 3, y - 3, 7, 7, white);
        nb_image_fill_rect(im, x - 2, y - 2, 5, 5, rgb);
    }
    nb_status s = nb_image_write_png(path, im);
    nb_image_free(im);
    return s;
}

/* Appends to a growing text buffer. */
typedef struct {
    char *b;
    size_t n, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (int k = 0; k < 2 && !t->failed; k++) {
        va_start(ap, fmt);
        int w = vsnprintf(t->b ? t->b + t->n : NULL, t->b ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0)
            t->failed = 1;
        else if (t->b && (size_t)w < t->cap - t->n) {
            t->n += (size_t)w;
            return;
        } else {
            size_t cap = (t->cap + (size_t)w + 1) * 2;
            char *nb = realloc(t->b, cap);
            if (!nb)
                t->failed = 1;
            else
                t->b = nb, t->cap = cap;
        }
    }
}

/* SVG: the grid as 80 x 80 cells (rects), the points as circles. */
static nb_status write_svg(const char *path, nb_model *m, const plane *p, const nb_dataset *d)
{
    const int g = 80;
    nb_tensor *prob = NULL;
    nb_status s = grid_probabilities(m, p, g, &prob);
    if (s) return s;
    const int64_t C = prob->size / prob->shape[0];
    text t = {0};
    put(&t, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", p->size,
        p->size, p->size, p->size);
    const double cell = (double)p->size / g;
    for (int r = 0; r < g; r++)
        for (int c = 0; c < g; c++) {
            unsigned char rgb[3];
            cell_rgb(prob->data + ((int64_t)r * g + c) * C, C, rgb);
            put(&t, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#%02x%02x%02x\"/>\n", c * cell,
                r * cell, cell + 0.05, cell + 0.05, rgb[0], rgb[1], rgb[2]);
        }
    for (int64_t i = 0; i < d->x->shape[0]; i++) {
        if (!drawable(d, i)) continue;
        unsigned char rgb[3];
        point_rgb(d->y->data[i], C, rgb);
        put(&t, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"#%02x%02x%02x\" stroke=\"white\"/>\n",
            px(p, d->x->data[2 * i]), py(p, d->x->data[2 * i + 1]), rgb[0], rgb[1], rgb[2]);
    }
    put(&t, "</svg>\n");
    nb_tensor_free(prob);
    s = t.failed ? nb_set_error(NB_ERR_NOMEM, "out of memory") : nb_write_file_atomic(path, t.b, t.n);
    free(t.b);
    return s;
}

/* The model must take 2-D points; its output, classes. */
static nb_status check_model(const nb_model *m)
{
    int64_t shape[NB_MAX_RANK];
    char sh[96];
    const int r = nb_model_input_shape(m, shape);
    if (r != 1 || shape[0] != 2)
        return nb_set_error(NB_ERR_SHAPE,
                            "the model takes inputs of shape %s; boundary draws models of 2-D points (input 2), e.g. "
                            "trained with --data circles",
                            nb_shape_str(r, shape, sh, sizeof sh));
    return NB_OK;
}

static int draw(const boundary_args *a, nb_model *m, const nb_dataset *d)
{
    const plane p = plane_of(d->x, (int)a->size);
    nb_status s;
    if (ends_with(a->out, ".svg"))
        s = write_svg(a->out, m, &p, d);
    else {
        nb_tensor *prob = NULL;
        s = grid_probabilities(m, &p, p.size, &prob);
        if (!s) s = write_png(a->out, &p, prob, p.size, d);
        nb_tensor_free(prob);
    }
    if (s) return cli_fail("boundary", "drawing");
    printf("wrote %s: %d x %d pixels, x0 in [%.3g, %.3g], x1 in [%.3g, %.3g], %lld points of %s (%s split)\n", a->out,
           p.size, p.size, p.cx - p.half, p.cx + p.half, p.cy - p.half, p.cy + p.half, (long long)d->x->shape[0],
           a->data, cli_choice_name(cli_splits, a->split));
    return 0;
}

int cmd_boundary(int argc, char **argv)
{
    boundary_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    if (!cli_check_output("boundary", "-o", a.out)) return 1;
    nb_model *m = NULL;
    nb_dataset d = {0};
    rc = 1;
    if (cli_load_trained_model(a.model, &m))
        cli_fail("boundary", "loading the model");
    else if (check_model(m))
        cli_fail("boundary", NULL);
    else if (cli_load_data_for_model(a.data, cli_choice_name(cli_splits, a.split), &a.csv, m, &d))
        cli_fail("boundary", "loading the data");
    else if (d.x->rank != 2 || d.x->shape[1] != 2) {
        char sh[96];
        nb_set_error(NB_ERR_SHAPE, "the data's examples have shape %s, not 2 values",
                     nb_shape_str(d.x->rank - 1, d.x->shape + 1, sh, sizeof sh));
        cli_fail("boundary", NULL);
    } else
        rc = draw(&a, m, &d);
    nb_dataset_free(&d);
    nb_model_free(m);
    return rc;
}
