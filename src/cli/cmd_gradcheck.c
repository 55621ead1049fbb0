/* nabla gradcheck: the gradient check of every op, one row per (op, input). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_row(const nb_opcheck_row *row, void *user)
{
    int *n = user;
    (*n)++;
    char where[64] = "";
    const nb_gradcheck_result *r = &row->r;
    int off = 0;
    for (int d = 0; d < r->worst_rank && off < (int)sizeof where - 8; d++)
        off += snprintf(where + off, sizeof where - (size_t)off, d ? ",%lld" : "[%lld", (long long)r->worst_index[d]);
    if (r->worst_rank) snprintf(where + off, sizeof where - (size_t)off, "]");
    /* A failure only in the columns of inputs at a kink (relu at 0, a tie
     * in a max pool) is no error of the VJP/JVP: say so. */
    char verdict[96] = "ok";
    if (!r->ok && r->kinks && r->ok_off_kinks)
        snprintf(verdict, sizeof verdict, "FAIL only at %lld %s element(s) at a kink or tie (ok elsewhere)",
                 (long long)r->kinks, row->wrt);
    else if (!r->ok) snprintf(verdict, sizeof verdict, "FAIL");
    printf("%-21s %-26s %-4s %-14s %10.2e %10.2e %7.3f  %-16s %s\n", row->op, row->case_name, row->wrt, row->shape,
           r->max_err_rev, r->max_err_fwd, r->worst_ratio, where, verdict);
}

typedef struct {
    long long seed;
} gradcheck_args;

static const cli_opt gradcheck_opts[] = {
    {"--seed", NULL, CLI_INT, offsetof(gradcheck_args, seed), "S", "1", "seed of the random inputs", 0, 0,
     4611686018427387904.0, NULL},
};

static const cli_spec gradcheck_spec = {
    "gradcheck", "[--seed S]",
    "Checks every op's reverse-mode (VJP) and forward-mode (JVP) Jacobian against central\n"
    "differences on random inputs. Pass: |analytic - numeric| <= atol + rtol |numeric|.\n",
    gradcheck_opts, CLI_NOPTS(gradcheck_opts), NULL};

int cmd_gradcheck_check_args(int argc, char **argv)
{
    gradcheck_args a;
    return cli_parse(&gradcheck_spec, argc, argv, &a);
}

int cmd_gradcheck(int argc, char **argv)
{
    gradcheck_args a;
    int rc = cli_parse(&gradcheck_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    /* The library's defaults, which follow the precision (eps ~ cbrt(ulp)). */
    nb_gradcheck_opts o;
    nb_gradcheck_defaults(&o);
    printf("gradient check in %s: eps %g, atol %g, rtol %g\n", nb_precision(), o.eps, o.atol, o.rtol);
    printf("%-21s %-26s %-4s %-14s %10s %10s %7s  %-16s %s\n", "op", "case", "wrt", "shape", "err(rev)",
           "err(fwd)", "ratio", "worst J index", "");
    int rows = 0;
    int failures = nb_opcheck_all((uint64_t)a.seed, &o, print_row, &rows);
    if (failures < 0) {
        fprintf(stderr, "nabla gradcheck: %s\n", nb_last_error());
        return 1;
    }
    printf("%d checks, %d passed, %d failed\n", rows, rows - failures, failures);
    return failures ? 1 : 0;
}
