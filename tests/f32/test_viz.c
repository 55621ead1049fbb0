/* Pictures: colour maps, heatmaps, the font and PNG writing in the library;
 * then every picture command of the CLI on a tiny model trained here, its
 * PNG read back with libpng and its SVG parsed as text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nabla.h"

static char dir[256];

/* Runs a command line in which every "@" stands for the test directory and
 * a leading "nabla" for the built CLI. */
static void sh(const char *line)
{
    char cmd[2048];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "%s", NB_BINARY_DIR "/nabla");
    for (const char *p = line + strlen("nabla"); *p && n + 300 < sizeof cmd; p++)
        if (*p == '@') n += (size_t)snprintf(cmd + n, sizeof cmd - n, "%s", dir);
        else cmd[n++] = *p, cmd[n] = '\0';
    int st = system(cmd);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) print_error("command failed: %s\n", cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Reads a PNG as RGB (malloc'ed); fails the test if it cannot. */
static unsigned char *read_png(const char *path, int *w, int *h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    int ok = png_image_begin_read_from_file(&im, path);
    if (!ok) print_error("%s: %s\n", path, im.message);
    assert_true(ok != 0);
    im.format = PNG_FORMAT_RGB;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(im));
    assert_non_null(px);
    assert_true(png_image_finish_read(&im, NULL, px, 0, NULL) != 0);
    *w = (int)im.width, *h = (int)im.height;
    return px;
}

static const unsigned char *pix(const unsigned char *px, int w, int x, int y) { return px + ((size_t)y * w + x) * 3; }

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* Number of "x,y" pairs in the points of the polyline whose label starts with label. */
static int points_of(const char *svg, const char *label)
{
    char key[128];
    snprintf(key, sizeof key, "data-label=\"%s", label);
    const char *p = strstr(svg, key);
    assert_non_null(p);
    p = strstr(p, "points=\"");
    assert_non_null(p);
    p += 8;
    int n = 0;
    for (; *p && *p != '"'; p++) n += *p == ',';
    return n;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/nabla_viz_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s train --data fashion-mnist --model 'conv2d 4 3 relu; maxpool 2; flatten; dense 10' --limit 512 "
             "--epochs 2 --no-test --threads 2 --out %s/m.safetensors --plot %s/curves.svg --quiet",
             NB_BINARY_DIR "/nabla", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_colormaps(void **state)
{
    (void)state;
    unsigned char c[3];
    nb_colormap_rgb(NB_CMAP_DIVERGING, 0.5, c);
    assert_true(c[0] == 255 && c[1] == 255 && c[2] == 255);
    nb_colormap_rgb(NB_CMAP_DIVERGING, 0, c);
    assert_true(c[2] > c[0]); /* blue end */
    nb_colormap_rgb(NB_CMAP_DIVERGING, 1, c);
    assert_true(c[0] > c[2]); /* red end */
    nb_colormap_rgb(NB_CMAP_GRAY, 0, c);
    assert_true(c[0] == 0);
    /* centred on zero: 0 is white whatever the (asymmetric) data range */
    nb_real d[3] = {-1, 0, 4};
    nb_image *im = NULL;
    assert_int_equal(nb_heatmap(d, 1, 3, NB_CMAP_DIVERGING, 0, 0, 2, 3, &im), NB_OK);
    assert_int_equal(im->width, 6);
    assert_int_equal(im->height, 3);
    const unsigned char *z = im->pixels + 2 * 3;
    assert_true(z[0] == 255 && z[1] == 255 && z[2] == 255);
    assert_true(im->pixels[2] > im->pixels[0]); /* -1: bluish */
    const unsigned char *r = im->pixels + 5 * 3;
    assert_true(r[0] == 180 && r[1] == 30 && r[2] == 40); /* 4 = max: full red */
    nb_image_free(im);
    assert_int_equal(nb_heatmap(d, 1, 3, NB_CMAP_DIVERGING, 0, 0, 100000, 1, &im), NB_ERR_TOO_LARGE);
    assert_null(im);
}

static void test_font_and_png(void **state)
{
    (void)state;
    static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
    assert_int_equal(nb_text_width("Ab", 1), 11);
    assert_int_equal(nb_text_width("Ab", 2), 22);
    assert_int_equal(nb_text_height("x\ny", 1), 19);
    nb_image *im = nb_image_new(40, 20, 3, white);
    assert_non_null(im);
    nb_image_text(im, 1, 1, "T", 1, black);
    /* T: the top bar is 5 pixels wide, the stem in the middle column */
    for (int x = 1; x <= 5; x++) assert_int_equal(im->pixels[(1 * 40 + x) * 3], 0);
    assert_int_equal(im->pixels[(5 * 40 + 3) * 3], 0);
    assert_int_equal(im->pixels[(5 * 40 + 1) * 3], 255);
    char path[512];
    snprintf(path, sizeof path, "%s/t.png", dir);
    assert_int_equal(nb_image_write_png(path, im), NB_OK);
    int w, h;
    unsigned char *px = read_png(path, &w, &h);
    assert_int_equal(w, 40);
    assert_int_equal(h, 20);
    assert_int_equal(pix(px, w, 3, 1)[0], 0);
    assert_int_equal(pix(px, w, 30, 10)[0], 255);
    free(px);
    assert_int_equal(nb_image_write_png("/nonexistent-dir/x.png", im), NB_ERR_IO);
    assert_non_null(strstr(nb_last_error(), "/nonexistent-dir/x.png"));
    nb_image_free(im);
}

/* Every pixel of im equals rgb (channels 3). */
static int all_pixels(const nb_image *im, const unsigned char rgb[3])
{
    for (int i = 0; i < im->width * im->height; i++)
        if (memcmp(im->pixels + 3 * i, rgb, 3) != 0) return 0;
    return 1;
}

/* Coordinates and sizes at the ends of int: clipped in 64 bits, never a
 * signed overflow (the sanitizer build aborts on one). */
static void test_image_extreme_coordinates(void **state)
{
    (void)state;
    static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0}, red[3] = {200, 0, 0};
    nb_image *im = nb_image_new(8, 6, 3, white);
    assert_non_null(im);
    /* fill_rect: far right, far left, negative sizes: nothing drawn */
    nb_image_fill_rect(im, INT_MAX - 2, 0, 10, 10, black);
    nb_image_fill_rect(im, 0, INT_MAX, 10, INT_MAX, black);
    nb_image_fill_rect(im, INT_MIN, 0, -1, 6, black);
    nb_image_fill_rect(im, 0, INT_MIN, 8, -5, black);
    nb_image_fill_rect(im, 2, 2, -5, -5, black);
    nb_image_fill_rect(im, INT_MIN, INT_MIN, INT_MAX, INT_MAX, black); /* ends at (-1, -1) */
    assert_true(all_pixels(im, white));
    /* a width of INT_MAX from x = 5: columns 5..7 of rows 1..2 */
    nb_image_fill_rect(im, 5, 1, INT_MAX, 2, red);
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 8; x++)
            assert_int_equal(im->pixels[(y * 8 + x) * 3], x >= 5 && (y == 1 || y == 2) ? 200 : 255);
    /* from far left over everything */
    nb_image_fill_rect(im, -5, -1, INT_MAX, INT_MAX, black);
    assert_true(all_pixels(im, black));

    /* paste: off every edge at the ends of int, then a clipped corner */
    nb_image *src = nb_image_new(3, 2, 3, red);
    assert_non_null(src);
    nb_image_fill_rect(im, 0, 0, 8, 6, white);
    nb_image_paste(im, src, INT_MAX, 0);
    nb_image_paste(im, src, 0, INT_MAX);
    nb_image_paste(im, src, INT_MAX - 1, INT_MAX - 1);
    nb_image_paste(im, src, INT_MIN, INT_MIN);
    nb_image_paste(im, src, -3, 0);
    assert_true(all_pixels(im, white));
    nb_image_paste(im, src, 6, 5);
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 8; x++) assert_int_equal(im->pixels[(y * 8 + x) * 3], x >= 6 && y == 5 ? 200 : 255);
    nb_image_free(src);

    /* text: sizes that do not fit an int saturate at INT_MAX */
    assert_int_equal(nb_text_width("Ab", INT_MAX), INT_MAX);
    assert_int_equal(nb_text_width("Ab", INT_MAX / 11), 11 * (INT_MAX / 11));
    assert_int_equal(nb_text_height("x\ny", INT_MAX), INT_MAX);
    assert_int_equal(nb_text_height("x", INT_MAX / 9), 9 * (INT_MAX / 9));
    /* T's first font pixel at scale INT_MAX covers the whole image; the
     * rest lies outside it */
    nb_image_fill_rect(im, 0, 0, 8, 6, white);
    nb_image_text(im, 0, 0, "TT\nTT", INT_MAX, black);
    assert_true(all_pixels(im, black));
    nb_image_fill_rect(im, 0, 0, 8, 6, white);
    nb_image_text(im, INT_MAX, INT_MAX, "TT\nTT", 3, black);
    nb_image_text(im, INT_MAX - 5, 0, "TT\nTT", INT_MAX, black);
    nb_image_text(im, INT_MIN, INT_MIN, "TT\nTT", INT_MAX, black);
    assert_true(all_pixels(im, white));
    /* a T at (-1, -1) scale 1: its top bar is off the image, the stem is
     * column 1 */
    nb_image_text(im, -1, -1, "T", 1, black);
    for (int y = 0; y < 6; y++) assert_int_equal(im->pixels[(y * 8 + 1) * 3], 0);
    assert_int_equal(im->pixels[(0 * 8 + 0) * 3], 255);

    /* colour bars placed or scaled beyond what int arithmetic can hold are
     * refused, and nothing is drawn */
    nb_image_fill_rect(im, 0, 0, 8, 6, white);
    assert_int_equal(nb_colorbar(im, INT_MAX - 1, 0, 100, 4, NB_CMAP_DIVERGING, -1, 1, 1), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "colorbar: "));
    assert_non_null(strstr(nb_last_error(), "16777216"));
    assert_int_equal(nb_colorbar(im, 0, 0, 10, 4, NB_CMAP_DIVERGING, -1, 1, INT_MAX), NB_ERR_ARG);
    assert_int_equal(nb_colorbar(im, 0, INT_MIN, 10, 4, NB_CMAP_GRAY, 0, 1, 1), NB_ERR_ARG);
    assert_int_equal(nb_colorbar(im, 0, 0, INT_MAX, INT_MAX, NB_CMAP_GRAY, 0, 1, 1), NB_ERR_ARG);
    assert_true(all_pixels(im, white));
    assert_int_equal(nb_colorbar(im, 1, 1, 6, 2, NB_CMAP_GRAY, 0, 1, 1), NB_OK);
    assert_int_equal(im->pixels[(1 * 8 + 1) * 3], 0);   /* black end */
    assert_int_equal(im->pixels[(2 * 8 + 6) * 3], 255); /* white end */
    assert_int_equal(im->pixels[(0 * 8 + 3) * 3], 40);  /* frame */

    /* a grid whose gap does not fit an int */
    nb_image *grid = (nb_image *)1;
    assert_int_equal(nb_image_grid(&im, 1, 1, INT_MAX - 3, white, &grid), NB_ERR_TOO_LARGE);
    assert_null(grid);
    assert_non_null(strstr(nb_last_error(), "image_grid: "));
    assert_int_equal(nb_image_grid(&im, 1, 1, 2, white, &grid), NB_OK);
    assert_int_equal(grid->width, 12);
    assert_int_equal(grid->height, 10);
    nb_image_free(grid);
    nb_image_free(im);
}

/* Zero (or negative) rows or columns: its own message, not the pixel limit. */
static void test_heatmap_empty(void **state)
{
    (void)state;
    nb_real d[3] = {1, 2, 3};
    nb_image *im = (nb_image *)1;
    assert_int_equal(nb_heatmap(d, 0, 3, NB_CMAP_DIVERGING, 0, 0, 1, 1, &im), NB_ERR_ARG);
    assert_null(im);
    assert_string_equal(nb_last_error(),
                        "heatmap: 0 rows x 3 columns: nothing to draw (pass at least 1 row and 1 column)");
    assert_int_equal(nb_heatmap(d, 3, 0, NB_CMAP_GRAY, 0, 1, 4, 4, &im), NB_ERR_ARG);
    assert_string_equal(nb_last_error(),
                        "heatmap: 3 rows x 0 columns: nothing to draw (pass at least 1 row and 1 column)");
    assert_int_equal(nb_heatmap(d, -1, 3, NB_CMAP_GRAY, 0, 1, 4, 4, &im), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "-1 rows x 3 columns: nothing to draw"));
    assert_null(strstr(nb_last_error(), "limit"));
    assert_int_equal(nb_heatmap(d, 1, 3, NB_CMAP_GRAY, 0, 1, 1, 1, &im), NB_OK);
    assert_int_equal(im->width, 3);
    nb_image_free(im);
}

/* A small well-formedness check of an XML document: UTF-8 without the
 * control characters XML forbids, one root element, tags nested and closed,
 * attributes quoted, unique and free of '<', and '&' only in the five named
 * entities or character references. Returns NULL when well formed, or what
 * is wrong. */
static const char *xml_check(const char *doc)
{
    const unsigned char *u = (const unsigned char *)doc;
    for (size_t i = 0; u[i];) {
        unsigned c = u[i];
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || (c < 0x20 && c != '\t' && c != '\n' && c != '\r')) return "a byte XML does not allow";
        unsigned cp = len == 1 ? c : c & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) return "bad UTF-8";
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        static const unsigned lowest[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < lowest[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
            return "bad UTF-8";
        i += (size_t)len;
    }
    const char *p = doc;
    if (!strncmp(p, "<?xml", 5)) {
        p = strstr(p, "?>");
        if (!p) return "unterminated declaration";
        p += 2;
    }
    char stack[64][32];
    int depth = 0, roots = 0;
    for (;;) {
        /* character data up to the next tag */
        while (*p && *p != '<') {
            if (*p == '&') {
                const char *e = strchr(p, ';');
                if (!e || e - p > 10) return "a bare '&' in text";
                if (strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
                    strncmp(p, "&quot;", 6) && strncmp(p, "&apos;", 6) && strncmp(p, "&#", 2))
                    return "an unknown entity in text";
            }
            if (depth == 0 && !strchr(" \t\r\n", *p)) return "text outside the root element";
            p++;
        }
        if (!*p) break;
        p++;
        int closing = *p == '/';
        if (closing) p++;
        char name[32];
        size_t n = 0;
        while (*p && (isalnum((unsigned char)*p) || strchr("-_:.", *p)) && n < sizeof name - 1) name[n++] = *p++;
        name[n] = '\0';
        if (!n) return "a '<' that does not start a tag";
        if (closing) {
            while (*p == ' ') p++;
            if (*p != '>') return "a bad closing tag";
            if (!depth || strcmp(stack[depth - 1], name)) return "a closing tag that does not match";
            depth--, p++;
            continue;
        }
        char attrs[32][32];
        int nattr = 0;
        for (;;) {
            int space = 0;
            while (*p && strchr(" \t\r\n", *p)) p++, space = 1;
            if (*p == '>' || (p[0] == '/' && p[1] == '>')) break;
            if (!space) return "attributes not separated by white space";
            n = 0;
            char an[32];
            while (*p && (isalnum((unsigned char)*p) || strchr("-_:.", *p)) && n < sizeof an - 1) an[n++] = *p++;
            an[n] = '\0';
            if (!n || *p != '=' || (p[1] != '"' && p[1] != '\'')) return "a bad attribute";
            for (int a = 0; a < nattr; a++)
                if (!strcmp(attrs[a], an)) return "a duplicate attribute";
            if (nattr < 32) memcpy(attrs[nattr++], an, sizeof an);
            char q = p[1];
            p += 2;
            while (*p && *p != q) {
                if (*p == '<') return "a '<' in an attribute value";
                if (*p == '&' && strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
                    strncmp(p, "&quot;", 6) && strncmp(p, "&apos;", 6) && strncmp(p, "&#", 2))
                    return "a bare '&' in an attribute value";
                p++;
            }
            if (!*p) return "an unterminated attribute value";
            p++;
        }
        if (depth == 0 && roots++) return "more than one root element";
        if (*p == '/') {
            p += 2;
        } else {
            if (depth == 64) return "nested too deep";
            memcpy(stack[depth++], name, sizeof name);
            p++;
        }
    }
    return depth ? "an unclosed element" : roots != 1 ? "no root element" : NULL;
}

static void assert_well_formed(const char *path)
{
    char *svg = slurp(path);
    const char *why = xml_check(svg);
    if (why) print_error("%s is not well-formed XML: %s\n", path, why);
    assert_null(why);
    free(svg);
    /* and, where it is installed, libxml2's own parser agrees */
    if (access("/usr/bin/xmllint", X_OK) == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "/usr/bin/xmllint --noout '%s'", path);
        assert_int_equal(system(cmd), 0);
    }
}

/* User text (titles, labels, legend names) is escaped wherever it reaches
 * the SVG; a colour that is not a colour is refused before anything is
 * written. */
static void test_svg_user_text(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/esc.svg", dir);
    double y[3] = {1, 3, 2};
    const char *attack = "\"/><script>alert(1)</script><x a=\"";
    nb_plot_series se[3] = {{.label = attack, .y = y, .n = 3, .color = "#1f5fa8", .markers = 1},
                            {.label = "a<b & \"c\" 'd'", .y = y, .n = 3, .color = "rgb(10, 20, 30)"},
                            {.label = "ctl\x01\x1f tab\there bad\xff\xc0\xaf utf-8 \xc3\xa9", .y = y, .n = 3}};
    nb_plot p = {.title = "</text><script>t</script>", .xlabel = "x & 'y'", .ylabel = "<ylabel/>",
                 .series = se, .nseries = 3};

    const char *bad[] = {"\"/><script>", "red\" onload=\"x", "", "#12345", "#ggg", "rgb(1,2,3)<", "url(#a)",
                         "rgb(1;2;3)", "verylongcolournamethatisnotacolourname"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        se[0].color = bad[i];
        assert_int_equal(nb_svg_plot(path, &p, 1), NB_ERR_ARG);
        assert_non_null(strstr(nb_last_error(), "svg_plot: plot 0 series 0: color '"));
        assert_non_null(strstr(nb_last_error(), "#rrggbb"));
        assert_int_equal(access(path, F_OK), -1);
    }
    /* the colour is also refused in a legend-less series */
    se[0].color = "#1f5fa8", se[2].color = "x>y";
    assert_int_equal(nb_svg_plot(path, &p, 1), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "series 2: color 'x>y'"));
    assert_int_equal(access(path, F_OK), -1);

    const char *good[] = {"#abc",      "#A1B2C3", "#a1b2c3d4", "steelblue", "rgb(10%, 20%, 30%)",
                          "hsla(120, 50%, 50%, 0.5)"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        se[2].color = good[i];
        assert_int_equal(nb_svg_plot(path, &p, 1), NB_OK);
        assert_well_formed(path);
        char *svg = slurp(path);
        char want[64];
        snprintf(want, sizeof want, "stroke=\"%s\"", good[i]);
        assert_non_null(strstr(svg, want));
        free(svg);
    }
    char *svg = slurp(path);
    assert_null(strstr(svg, "<script"));
    assert_null(strstr(svg, "<x "));
    assert_null(strstr(svg, "<ylabel"));
    assert_non_null(strstr(svg, "data-label=\"&quot;/&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;x a=&quot;\""));
    assert_non_null(strstr(svg, ">&quot;/&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;x a=&quot;</text>"));
    assert_non_null(strstr(svg, ">a&lt;b &amp; &quot;c&quot; &apos;d&apos;</text>"));
    assert_non_null(strstr(svg, ">&lt;/text&gt;&lt;script&gt;t&lt;/script&gt;</text>"));
    assert_non_null(strstr(svg, ">x &amp; &apos;y&apos;</text>"));
    assert_non_null(strstr(svg, ">&lt;ylabel/&gt;</text>"));
    /* control characters and bytes that are not UTF-8 become U+FFFD; tabs
     * are kept as a character reference, valid UTF-8 as it is */
    assert_non_null(strstr(svg, ">ctl\xef\xbf\xbd\xef\xbf\xbd tab&#9;here bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                                "utf-8 \xc3\xa9</text>"));
    assert_non_null(strstr(svg, "stroke=\"rgb(10, 20, 30)\""));
    free(svg);
}

/* nb_svg_plot in a child process stopped after a few seconds (a plot that
 * loops forever also grows its buffer without end): its status, or -1 when
 * it did not finish. */
static int svg_plot_bounded(const char *path, const nb_plot *p)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(5);
        _exit(nb_svg_plot(path, p, 1) == NB_OK ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* An axis range too narrow for its magnitude (steps below the resolution of
 * a double) draws a bounded number of ticks instead of looping forever. */
static void test_svg_narrow_range(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/narrow.svg", dir);
    double x[2] = {0, 1}, y[2] = {1e16, 1e16 + 2};
    nb_plot_series se = {.label = "narrow", .x = x, .y = y, .n = 2};
    nb_plot p = {.series = &se, .nseries = 1};
    assert_int_equal(svg_plot_bounded(path, &p), 0);
    assert_well_formed(path);
    char *svg = slurp(path);
    int yt = count(svg, "class=\"ytick\"");
    assert_true(yt >= 2 && yt <= 50);
    assert_int_equal(points_of(svg, "narrow"), 2);
    free(svg);
    /* ranges given explicitly: too narrow for the magnitude, and one whose
     * tick step underflows to 0 */
    double xs[2] = {0, 1}, ys[2] = {1, 2};
    nb_plot_series s2 = {.label = "explicit", .x = xs, .y = ys, .n = 2};
    nb_plot q = {.series = &s2, .nseries = 1, .xmin = 1e16, .xmax = 1e16 + 2, .ymin = 0, .ymax = 5e-324};
    assert_int_equal(svg_plot_bounded(path, &q), 0);
    assert_well_formed(path);
    svg = slurp(path);
    assert_true(count(svg, "class=\"xtick\"") <= 50 && count(svg, "class=\"ytick\"") <= 50);
    assert_int_equal(points_of(svg, "explicit"), 2);
    free(svg);
}

static void test_saliency(void **state)
{
    (void)state;
    sh("nabla saliency --model @/m.safetensors --data fashion-mnist --count 16 -o @/sal.png >/dev/null");
    char path[512];
    snprintf(path, sizeof path, "%s/sal.png", dir);
    int w, h;
    unsigned char *px = read_png(path, &w, &h);
    /* 4 columns of (2 x 112 + 4 + 16) pixels plus a gap; 4 rows */
    assert_int_equal(w, 4 * (228 + 16) + 16);
    assert_true(h > 4 * 152 && h < 1000);
    /* the first test image (black background) at the first tile */
    const unsigned char *p = pix(px, w, 18, 97 + 16 + 2);
    assert_true(p[0] < 60 && p[1] < 60 && p[2] < 60);
    /* the title's first letter is dark ink on white */
    int ink = 0;
    for (int y = 14; y < 35; y++)
        for (int x = 16; x < 31; x++) ink += pix(px, w, x, y)[0] < 100;
    assert_true(ink > 20);
    assert_true(pix(px, w, w - 2, 2)[0] == 255); /* background */
    free(px);
}

static void test_filters(void **state)
{
    (void)state;
    sh("nabla filters --model @/m.safetensors -o @/f.png >/dev/null");
    char path[512];
    snprintf(path, sizeof path, "%s/f.png", dir);
    int w, h;
    unsigned char *px = read_png(path, &w, &h);
    assert_true(w >= 360 && h > 150);
    /* kernel 0's centre weight: a colour, not the white background (a
     * trained weight is never exactly 0) */
    const unsigned char *c = pix(px, w, 13 + 31, 104 + 31);
    assert_false(c[0] == 255 && c[1] == 255 && c[2] == 255);
    /* the grey frame around tile 0 */
    assert_int_equal(pix(px, w, 12, 104)[0], 170);
    free(px);
}

/* A convolution over several channels: a matrix of tiles, row o = output
 * channel, column c = input channel, sized to fit (64 x 32 kernels too). */
static void test_filters_matrix(void **state)
{
    (void)state;
    sh("nabla train --data fashion-mnist --model 'conv2d 4 3 relu; conv2d 6 3; conv2d 64 3; flatten; dense 10' "
       "--limit 16 --epochs 1 --no-test --quiet --out @/c3.safetensors >/dev/null");
    sh("nabla filters --model @/c3.safetensors --layer 1 -o @/f1.png >/dev/null");
    char path[512];
    snprintf(path, sizeof path, "%s/f1.png", dir);
    int w, h;
    unsigned char *px = read_png(path, &w, &h);
    /* 21 pixels per weight, cells of 3 x 21 + 2 + 4 = 69, 48 pixels of row
     * labels, the grid below a 69-pixel head: tile (o, c)'s frame at
     * (52 + 69 c, 99 + 69 o), its centre weight 32 pixels further */
    for (int o = 0; o < 6; o += 5)
        for (int c = 0; c < 4; c += 3) {
            assert_int_equal(pix(px, w, 52 + 69 * c, 99 + 69 * o)[0], 170);
            const unsigned char *q = pix(px, w, 52 + 69 * c + 32, 99 + 69 * o + 32);
            assert_false(q[0] == 255 && q[1] == 255 && q[2] == 255);
        }
    assert_true(w >= 48 + 4 * 69 && h > 69 + 6 * 69);
    free(px);
    sh("nabla filters --model @/c3.safetensors --layer 2 -o @/f2.png >/dev/null"); /* 64 x 6 */
    snprintf(path, sizeof path, "%s/f2.png", dir);
    px = read_png(path, &w, &h);
    assert_true(w <= 4096 && h <= 4096 + 200);
    free(px);
}

static void test_jacobian_png(void **state)
{
    (void)state;
    int64_t shape[4] = {1, 28, 28, 1};
    nb_tensor *x = nb_tensor_new(4, shape);
    assert_non_null(x);
    for (int i = 0; i < 784; i++) x->data[i] = (float)((i * 37) % 101) / 100.0f;
    char path[512];
    snprintf(path, sizeof path, "%s/x.npy", dir);
    assert_int_equal(nb_npy_write(path, x), NB_OK);
    nb_tensor_free(x);
    sh("nabla jacobian --model @/m.safetensors --input @/x.npy --png @/J.png 2>/dev/null");
    snprintf(path, sizeof path, "%s/J.png", dir);
    int w, h;
    unsigned char *px = read_png(path, &w, &h);
    /* rows: 10 logits at 32 px, columns: 784 inputs at 1 px */
    assert_int_equal(w, 784 + 32);
    assert_int_equal(h, 62 + 320 + 2 + 80);
    int coloured = 0;
    for (int x2 = 16; x2 < 16 + 784; x2++) {
        const unsigned char *p = pix(px, w, x2, 62 + 5);
        coloured += !(p[0] == 255 && p[1] == 255 && p[2] == 255);
    }
    assert_true(coloured > 100);
    /* colour bar: blue at the left, white at the centre, red at the right */
    int by = 62 + 320 + 14 + 7;
    assert_true(pix(px, w, 17, by)[2] > pix(px, w, 17, by)[0]);
    assert_true(pix(px, w, 16 + 150, by)[1] >= 250);
    assert_true(pix(px, w, 16 + 298, by)[0] > pix(px, w, 16 + 298, by)[2]);
    free(px);
}

static void test_gd_svg(void **state)
{
    (void)state;
    sh("nabla demo gd --lr 0.1 --steps 10 --plot @/gd.svg >/dev/null");
    char path[512];
    snprintf(path, sizeof path, "%s/gd.svg", dir);
    char *svg = slurp(path);
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "</svg>"));
    assert_int_equal(count(svg, "<polyline class=\"series\""), 2);
    assert_int_equal(points_of(svg, "x_k"), 11); /* x_0 .. x_10 */
    assert_int_equal(count(svg, "class=\"marker\""), 11);
    assert_int_equal(points_of(svg, "f(x) = 2x^2"), 201);
    assert_non_null(strstr(svg, "class=\"xlabel\" x="));
    assert_non_null(strstr(svg, ">f(x)</text>"));
    assert_non_null(strstr(svg, "class=\"legend-text\""));
    assert_non_null(strstr(svg, "alpha = 0.1</text>"));
    assert_true(count(svg, "class=\"xtick\"") >= 3 && count(svg, "class=\"ytick\"") >= 3);
    free(svg);
}

static void test_train_svg(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/curves.svg", dir);
    char *svg = slurp(path);
    assert_int_equal(count(svg, "class=\"plot\""), 2);
    assert_int_equal(count(svg, "<polyline class=\"series\""), 4); /* train/val x loss/accuracy */
    assert_int_equal(points_of(svg, "training"), 2);                 /* 2 epochs */
    assert_int_equal(points_of(svg, "validation"), 2);
    assert_non_null(strstr(svg, ">Loss per epoch</text>"));
    assert_non_null(strstr(svg, ">Accuracy per epoch</text>"));
    assert_int_equal(count(svg, ">epoch</text>"), 2);
    assert_int_equal(count(svg, "class=\"legend-text\""), 4);
    free(svg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colormaps),  cmocka_unit_test(test_font_and_png), cmocka_unit_test(test_saliency),
        cmocka_unit_test(test_filters), cmocka_unit_test(test_filters_matrix),    cmocka_unit_test(test_jacobian_png), cmocka_unit_test(test_gd_svg),
        cmocka_unit_test(test_train_svg),
        cmocka_unit_test(test_image_extreme_coordinates),
        cmocka_unit_test(test_heatmap_empty),
        cmocka_unit_test(test_svg_user_text),
        cmocka_unit_test(test_svg_narrow_range),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
