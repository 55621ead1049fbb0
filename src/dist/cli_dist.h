/* The CLI's processes: MPI when the CLI is built with it (NB_HAVE_MPI) and
 * started by mpirun or srun, else one process of rank 0. Part of the CLI,
 * not of the library (src/dist/cli_dist.c). Every function here is called
 * by all ranks in the same order (they are collectives). */
#ifndef NB_CLI_DIST_H
#define NB_CLI_DIST_H

#include "nabla.h"

#include <stddef.h>

/* Starts MPI if a launcher started this process (idempotent). 0, or 1
 * after printing why MPI could not start. */
int cli_dist_start(const char *cmd);
int cli_dist_rank(void);
int cli_dist_size(void);
/* The communicator for nb_train_opts.comm; NULL for one process. */
const nb_comm *cli_dist_comm(void);
/* Ends the processes with exit code rc: with P > 1 an error (rc 1) that
 * was not a refusal of every rank together (cli_dist_same, ...) aborts the
 * job, so no rank waits for the failed one in a collective. Returns rc. */
int cli_dist_end(int rc);
/* 0 if every rank has the same `len` bytes at data; else rank 0 prints
 * "nabla CMD: the ranks differ in WHAT: rank R's ... (hint)" and every rank
 * gets 1 (a refusal of all ranks together). */
int cli_dist_same(const char *cmd, const char *what, const void *data, size_t len, const char *hint);
/* As cli_dist_same for a text (the ranks' texts are printed when they differ). */
int cli_dist_same_text(const char *cmd, const char *what, const char *text, const char *hint);
/* This rank's share [lo, hi) of n items: contiguous, in rank order. */
void cli_dist_range(int64_t n, int64_t *lo, int64_t *hi);
/* Sums n doubles in place over the ranks (every rank gets the sums). */
int cli_dist_sum(double *buf, int n);
/* Rank 0 receives every rank's bytes (bytes may differ by rank) one after
 * the other in rank order into recv (NULL on other ranks). */
int cli_dist_gather(const void *send, size_t bytes, void *recv);
/* 1 (on every rank, rank 0 printing why) if n examples cannot give each of
 * the processes one; 0 otherwise. */
int cli_dist_check_rows(const char *cmd, int64_t n);
/* A usage error of every rank (the same arguments): rank 0 prints
 * "nabla CMD: WHY"; returns 2. */
int cli_dist_refuse(const char *cmd, const char *why);
/* A new tensor holding rows [lo, hi) of t's first axis. */
nb_tensor *cli_dist_rows(const nb_tensor *t, int64_t lo, int64_t hi);
/* Rank 0's *t becomes every rank's rows of *t, in rank order (n rows in
 * all); other ranks keep theirs. 0, or 1 (every rank) with nb_last_error. */
int cli_dist_gather_rows(nb_tensor **t, int64_t n);
/* 64-bit hash of bytes (for comparing data across ranks). */
uint64_t cli_dist_hash(const void *data, size_t len, uint64_t h);

#endif
