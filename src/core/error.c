/* Thread-local error messages, versions and thread settings. */
#include "core.h"

#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char nb_error_message[512];
/* The most recent message that was not about a NULL input: the likely
 * cause of a NULL handed on through a chain of calls. */
static _Thread_local char nb_error_cause[512];

/* The length of the UTF-8 sequence at s (at most n bytes) when it is valid
 * and prints as a character: no overlong form, surrogate, C1 control
 * (U+0080..U+009F), bidirectional control (U+061C, U+200E, U+200F,
 * U+202A..U+202E, U+2066..U+2069, which reorder the text around them) or
 * line/paragraph separator (U+2028, U+2029); else 0. */
static size_t printable_utf8(const unsigned char *s, size_t n)
{
    const size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    if (s[0] > 0xF4 || !len || len > n) return 0;
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp <= 0x9F) return 0;
    if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069)) return 0;
    /* the other bidirectional marks (U+061C, U+200E, U+200F) and the line
     * and paragraph separators, which end a line for Unicode */
    if (cp == 0x061C || cp == 0x200E || cp == 0x200F || cp == 0x2028 || cp == 0x2029) return 0;
    return len;
}

const char *nb_escape_text(char *buf, size_t cap, const char *text, size_t len)
{
    if (!buf || !cap) return buf;
    const unsigned char *t = (const unsigned char *)(text ? text : "");
    const size_t n = strnlen((const char *)t, len);
    size_t k = 0, i = 0, cut = 0; /* cut: the last end of a piece with room for "..." after it */
    while (i < n) {
        const size_t u = t[i] >= 0x80 ? printable_utf8(t + i, n - i) : 0;
        char piece[8];
        size_t m;
        if (u) memcpy(piece, t + i, u), m = u;
        else if (t[i] == '\\') memcpy(piece, "\\\\", 2), m = 2;
        else if (t[i] >= 0x20 && t[i] < 0x7F) piece[0] = (char)t[i], m = 1;
        else m = (size_t)snprintf(piece, sizeof piece, "\\x%02x", t[i]);
        if (k + 3 < cap) cut = k;
        if (k + m >= cap) break;
        memcpy(buf + k, piece, m), k += m, i += u ? u : 1;
    }
    if (i < n && cut + 3 < cap) memcpy(buf + cut, "...", 3), k = cut + 3; /* cut short: say so */
    buf[k] = '\0';
    return buf;
}

/* The last defence for messages that quote a file's text without
 * nb_escape_text: control characters (a newline, ESC of an ANSI sequence)
 * as \xNN, so no message moves the cursor or forges a line. Idempotent. */
static void escape_controls(char *dst, size_t cap, const char *src)
{
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && k + 1 < cap; p++) {
        if (*p >= 0x20 && *p != 0x7F) {
            dst[k++] = (char)*p;
            continue;
        }
        if (k + 5 >= cap) break;
        k += (size_t)snprintf(dst + k, cap - k, "\\x%02x", *p);
    }
    dst[k] = '\0';
}

nb_status nb_set_error(nb_status status, const char *fmt, ...)
{
    /* Formatted apart first: callers wrap the last message in a new one
     * (nb_fail(s, "%s: %s", name, nb_last_error())), and vsnprintf into the
     * buffer an argument points to overwrites what it is still reading. */
    char raw[sizeof nb_error_message], msg[sizeof nb_error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_controls(msg, sizeof msg, raw);
    memcpy(nb_error_message, msg, sizeof msg);
    memcpy(nb_error_cause, msg, sizeof msg);
    return status;
}

/* nb_tanh(nb_add(nb_matmul(x, w), b)) with a bad matmul hands NULL to add
 * and then to tanh: each says its own input was NULL and names the earlier
 * error, which is then most likely why. */
nb_status nb_fail_null_input(const char *who, int i)
{
    if (nb_error_cause[0])
        snprintf(nb_error_message, sizeof nb_error_message, "%s: input %d is NULL (the last error before it: %.400s)",
                 who, i, nb_error_cause);
    else
        snprintf(nb_error_message, sizeof nb_error_message, "%s: input %d is NULL", who, i);
    return NB_ERR_ARG;
}

void nb_clear_error(void) { nb_error_message[0] = nb_error_cause[0] = '\0'; }

const char *nb_last_error(void) { return nb_error_message; }

const char *nb_status_name(nb_status s)
{
    switch (s) {
    case NB_OK: return "ok";
    case NB_ERR_ARG: return "bad argument";
    case NB_ERR_SHAPE: return "shape error";
    case NB_ERR_NOMEM: return "out of memory";
    case NB_ERR_TOO_LARGE: return "too large";
    case NB_ERR_IO: return "i/o error";
    case NB_ERR_FORMAT: return "format error";
    case NB_ERR_NUMERIC: return "numerical error";
    case NB_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

const char *nb_version(void) { return NB_VERSION; }

const char *nb_precision(void) { return sizeof(nb_real) == 8 ? "float64" : "float32"; }

/* Process-wide, as the BLAS's own thread count is. OpenMP keeps its thread
 * count per thread (omp_set_num_threads sets the caller's only), so the
 * passes call nb_threads_apply() to carry it into threads the caller
 * started: a model trained in a new pthread then uses the same count (and
 * gets the same bits) as one trained in the thread that set it. */
static _Atomic int nb_threads_requested = 0;

void nb_threads_apply(void)
{
#ifdef _OPENMP
    int n = nb_threads_requested;
    if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

void nb_set_num_threads(int n)
{
    nb_threads_requested = n > 0 ? n : 0;
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
#endif
}

int nb_get_num_threads(void)
{
#ifdef _OPENMP
    return nb_threads_requested > 0 ? nb_threads_requested : omp_get_max_threads();
#else
    return 1;
#endif
}
