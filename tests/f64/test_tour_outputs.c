/* The outputs pasted in docs/tour.md and README.md against what the
 * programs print today. A pasted block is marked by an HTML comment on the
 * line right before its ``` fence:
 *
 *   <!-- output: examples/models -->
 *
 * The command runs through the shell in the build directory (so
 * `examples/models`, or `./nabla demo gd --lr 0.1`), stdout and stderr
 * merged, and must print the block line for line. Two normalisations, for
 * what legitimately varies:
 *   - a block line that is only "..." stands for any number of lines (an
 *     excerpt of a long output);
 *   - a number whose magnitude is below 1e-12 in both (a rounding residue,
 *     e.g. "max |graph - loops| = 2.78e-17", or 0 where the machine's GEMM
 *     happens to be exact) matches any other such number: its digits depend
 *     on the BLAS kernel of the CPU, not on nabla.
 * Blanks at the end of lines are ignored; nothing else is. A marker without
 * a fence after it, a command that fails, or fewer marked blocks than the
 * tour pastes fail the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "nb_test_f64.h"

#define MARK "<!-- output: "
#define TINY 1e-12

/* The lines of text (split in place; '\n' replaced by NUL). */
typedef struct {
    char **line;
    size_t n;
} lines;

static lines split_lines(char *text)
{
    lines L = {0};
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == '\n';
    L.line = calloc(cap, sizeof *L.line);
    assert_non_null(L.line);
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        L.line[L.n++] = p;
        p = nl ? nl + 1 : p + strlen(p);
    }
    return L;
}

/* Length of s without its blanks at the end. */
static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    return n;
}

/* Whether a number starts at s[i] (not inside a word or another number). */
static int number_at(const char *s, size_t i)
{
    if (i && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.' || s[i - 1] == '_')) return 0;
    const char *p = s + i;
    if (*p == '-' || *p == '+') p++;
    return isdigit((unsigned char)*p);
}

/* Whether a block line and an output line are equal under the rules above. */
static int lines_equal(const char *want, const char *got)
{
    const size_t nw = trimmed_len(want), ng = trimmed_len(got);
    size_t i = 0, j = 0;
    while (i < nw && j < ng) {
        if (number_at(want, i) && number_at(got, j)) {
            char *ew, *eg;
            const double a = strtod(want + i, &ew), b = strtod(got + j, &eg);
            const size_t lw = (size_t)(ew - (want + i)), lg = (size_t)(eg - (got + j));
            if (fabs(a) < TINY && fabs(b) < TINY && i + lw <= nw && j + lg <= ng) {
                i += lw, j += lg;
                continue;
            }
        }
        if (want[i] != got[j]) return 0;
        i++, j++;
    }
    return i == nw && j == ng;
}

/* Block lines from bi on against output lines from oi on; *far: the
 * furthest (block, output) pair reached, for the message. */
static int match_from(const lines *b, size_t bi, const lines *o, size_t oi, size_t far[2])
{
    if (bi > far[0] || (bi == far[0] && oi > far[1])) far[0] = bi, far[1] = oi;
    if (bi == b->n) return oi == o->n;
    if (!strcmp(b->line[bi], "...")) {
        for (size_t k = oi; k <= o->n; k++)
            if (match_from(b, bi + 1, o, k, far)) return 1;
        return 0;
    }
    return oi < o->n && lines_equal(b->line[bi], o->line[oi]) && match_from(b, bi + 1, o, oi + 1, far);
}

/* Whether output matches block; when not, says where in why. */
static int block_matches(const char *block, const char *output, char *why, size_t cap)
{
    char *bc = strdup(block), *oc = strdup(output);
    assert_true(bc && oc);
    lines b = split_lines(bc), o = split_lines(oc);
    size_t far[2] = {0, 0};
    const int ok = match_from(&b, 0, &o, 0, far);
    if (!ok)
        snprintf(why, cap, "block line %zu: '%s'\n  program line %zu: '%s'", far[0] + 1,
                 far[0] < b.n ? b.line[far[0]] : "(the block has ended)", far[1] + 1,
                 far[1] < o.n ? o.line[far[1]] : "(the output has ended)");
    free(b.line), free(o.line), free(bc), free(oc);
    return ok;
}

/* The whole file, NUL-terminated (malloc'ed). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) print_error("cannot open %s\n", path);
    assert_non_null(f);
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* The marked blocks of one markdown text: each marker's command and the
 * block of the fence right after it. Returns how many; fails on a marker
 * without a fence on the next line or without a closing fence. */
typedef struct {
    char cmd[512];
    char *block; /* malloc'ed, lines joined by '\n' */
    int line;    /* of the marker, 1-based */
} pasted;

static size_t find_blocks(const char *doc, const char *name, pasted *out, size_t cap)
{
    size_t n = 0;
    int line = 1;
    for (const char *p = doc; *p; line++) {
        const char *e = strchr(p, '\n'), *next = e ? e + 1 : p + strlen(p);
        if (!strncmp(p, MARK, strlen(MARK))) {
            const char *c = p + strlen(MARK), *end = strstr(c, " -->");
            if (!end || end > next || n == cap) print_error("%s:%d: a bad marker (or too many)\n", name, line);
            assert_true(end && end < next && n < cap);
            pasted *b = &out[n++];
            snprintf(b->cmd, sizeof b->cmd, "%.*s", (int)(end - c), c);
            b->line = line;
            if (strncmp(next, "```", 3)) print_error("%s:%d: no ``` fence right after the marker\n", name, line);
            assert_int_equal(strncmp(next, "```", 3), 0);
            const char *body = strchr(next, '\n'), *close = body ? strstr(body, "\n```") : NULL;
            if (!close) print_error("%s:%d: the block after the marker is not closed\n", name, line);
            assert_non_null(close);
            body++;
            b->block = strndup(body, (size_t)(close - body));
            assert_non_null(b->block);
        }
        p = next;
    }
    return n;
}

/* Runs a marked command in the build directory; its output (malloc'ed). */
static char *run_marked(const pasted *b, const char *name)
{
    char cmd[2048];
    const int len = snprintf(cmd, sizeof cmd, "cd '%s' && %s 2>&1", NB_BINARY_DIR, b->cmd);
    assert_true(len > 0 && (size_t)len < sizeof cmd);
    int st;
    char *out = run_capture(cmd, &st);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        print_error("%s:%d: '%s' failed (status %d):\n%s\n", name, b->line, b->cmd, st, out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    size_t n = strlen(out);
    if (n && out[n - 1] == '\n') out[n - 1] = '\0'; /* the block has no newline before its fence */
    return out;
}

/* Every marked block of a file (relative to the source tree) against its
 * command; at least `least` of them. */
static void check_file(const char *rel, size_t least)
{
    char path[1024], why[1200];
    snprintf(path, sizeof path, "%s/%s", NB_SOURCE_DIR, rel);
    char *doc = read_text(path);
    pasted b[32];
    const size_t n = find_blocks(doc, rel, b, 32);
    if (n < least) print_error("%s: %zu marked output blocks, expected at least %zu\n", rel, n, least);
    assert_true(n >= least);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char *out = run_marked(&b[i], rel);
        if (!block_matches(b[i].block, out, why, sizeof why)) {
            print_error("%s:%d: the block pasted for '%s' is out of date (paste the program's output):\n  %s\n", rel,
                        b[i].line, b[i].cmd, why);
            bad++;
        }
        free(out), free(b[i].block);
    }
    free(doc);
    assert_int_equal(bad, 0);
}

static void test_tour_blocks(void **state)
{
    (void)state;
    check_file("docs/tour.md", 6); /* models, gradient_descent, nabla demo gd, backprop_cnn, jacobians, curvature */
}

/* The README pastes commands and code, and one program's output: what
 * examples/readme_jacobian prints. */
static void test_readme_blocks(void **state)
{
    (void)state;
    check_file("README.md", 1);
}

/* The comparison itself: a drifted digit, a lost or extra line, an excerpt,
 * rounding residues, blanks at the end. */
static void test_comparison_rules(void **state)
{
    (void)state;
    char why[1200];
    const char *out = "a = 0.5\nmax |d| = 2.78e-17\nb = 1.1259e-35\nend";
    assert_true(block_matches("a = 0.5\nmax |d| = 2.78e-17\nb = 1.1259e-35\nend", out, why, sizeof why));
    assert_true(block_matches("a = 0.5  \nmax |d| = 0\nb = 3e-20\nend", out, why, sizeof why));
    assert_false(block_matches("a = 0.6\nmax |d| = 2.78e-17\nb = 1.1259e-35\nend", out, why, sizeof why));
    assert_non_null(strstr(why, "block line 1: 'a = 0.6'"));
    assert_non_null(strstr(why, "program line 1: 'a = 0.5'"));
    assert_false(block_matches("a = 0.5\nmax |d| = 1e-9\nb = 1.1259e-35\nend", out, why, sizeof why));
    assert_false(block_matches("a = 0.5\nmax |d| = 2.78e-17\nend", out, why, sizeof why));
    assert_false(block_matches("a = 0.5\nmax |d| = 2.78e-17\nb = 1.1259e-35\nend\nmore", out, why, sizeof why));
    assert_non_null(strstr(why, "(the output has ended)"));
    assert_true(block_matches("a = 0.5\n...\nend", out, why, sizeof why));
    assert_true(block_matches("...\nend", out, why, sizeof why));
    assert_true(block_matches("a = 0.5\n...\nmax |d| = 2.78e-17\n...\nend", out, why, sizeof why));
    assert_false(block_matches("a = 0.5\n...\nstart", out, why, sizeof why));
    assert_false(block_matches("a = 0.5\n...", "b = 0.5\nend", why, sizeof why));
    assert_false(block_matches("x1 = 0.5", "x2 = 0.5", why, sizeof why)); /* digits in a name are text */
    assert_false(block_matches("", "something", why, sizeof why));
}

/* Markers: a block found with its command and its line, unmarked blocks
 * after it left alone. */
static void test_markers(void **state)
{
    (void)state;
    pasted b[4];
    const char *doc = "text\n<!-- output: examples/models -->\n```\nline 1\nline 2\n```\nmore\n```\nnot marked\n```\n";
    assert_int_equal(find_blocks(doc, "doc", b, 4), 1);
    assert_string_equal(b[0].cmd, "examples/models");
    assert_string_equal(b[0].block, "line 1\nline 2");
    assert_int_equal(b[0].line, 2);
    free(b[0].block);
    assert_int_equal(find_blocks("no markers\n```\nx\n```\n", "doc", b, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comparison_rules),
        cmocka_unit_test(test_markers),
        cmocka_unit_test(test_tour_blocks),
        cmocka_unit_test(test_readme_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
