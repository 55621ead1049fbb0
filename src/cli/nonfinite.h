/* Which examples of a command's result are not finite, and why: the report
 * that predict, jacobian and grad print on stderr when an example's input or
 * result holds NaN or Inf. Those commands still write their file (NaN stays
 * NaN, as in PyTorch, and the rows keep their example's index) and exit
 * with CLI_EXIT_NONFINITE, so that a script notices. */
#ifndef NB_CLI_NONFINITE_H
#define NB_CLI_NONFINITE_H

#include "nabla.h"

/* Exit status of a command that wrote its output, some of it not finite. */
#define CLI_EXIT_NONFINITE 3

/* One tensor whose leading axis is the N examples, under the name the
 * report gives it ("input", "labels", "output", "Jacobian"); result: 1 for
 * what the model computed, 0 for what it was given. */
typedef struct {
    const char *name;
    const nb_tensor *t;
    int result;
} cli_rows;

/* Counts the NaN and Inf in every example's row of each tensor (tensors
 * whose size is not a multiple of N are left out) and, when some example
 * has any, prints on stderr
 *   nabla CMD: warning: K of N examples have NaN or Inf (counted from 0):
 *     example 3 (input: 1 NaN; output: 10 NaN), ...
 * naming the first 10, and a hint when an example was given only finite
 * values but some result of it is not. Returns K. */
int64_t cli_report_nonfinite(const char *cmd, int64_t N, int ntensors, const cli_rows *rows);

/* The NaN and Inf among v[0..n): writes "3 NaN, 1 Inf" (or "finite") to buf;
 * returns their count. */
int64_t cli_nonfinite_str(const nb_real *v, int64_t n, char *buf, size_t size);

#endif
