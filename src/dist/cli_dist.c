/* The CLI's processes over MPI_COMM_WORLD (see cli_dist.h). Without
 * NB_HAVE_MPI, or when no launcher started the process, everything here is
 * one process of rank 0 and the collectives are copies. */
#include "cli_dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef NB_HAVE_MPI
#include <mpi.h>
#endif

static int dist_rank = 0, dist_size = 1, dist_started = 0, dist_refused = 0;
static nb_comm dist_comm;

uint64_t cli_dist_hash(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

#ifdef NB_HAVE_MPI
static nb_status mpi_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, msg, &n);
    return nb_set_error(NB_ERR_IO, "MPI_%s: %s", what, msg);
}

static nb_status mpi_allgather(const void *send, size_t bytes, void *recv, void *user)
{
    if (bytes > INT_MAX) return nb_set_error(NB_ERR_TOO_LARGE, "MPI_Allgather: %zu bytes per rank", bytes);
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? NB_OK : mpi_fail(rc, "Allgather");
}

static nb_status mpi_alltoall(const void *send, size_t bytes, void *recv, void *user)
{
    if (bytes > INT_MAX) return nb_set_error(NB_ERR_TOO_LARGE, "MPI_Alltoall: %zu bytes per rank", bytes);
    int rc = MPI_Alltoall(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? NB_OK : mpi_fail(rc, "Alltoall");
}

static nb_status mpi_gather(const void *send, size_t bytes, void *recv, void *user)
{
    (void)user;
    if (bytes > INT_MAX) return nb_set_error(NB_ERR_TOO_LARGE, "MPI_Gather: %zu bytes per rank", bytes);
    int rc = MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? NB_OK : mpi_fail(rc, "Gather");
}

/* In place over the ranks (plain data-parallel training's gradients), in
 * pieces of at most INT_MAX values. */
static nb_status mpi_allreduce(nb_real *buf, size_t count, void *user)
{
    (void)user;
    const MPI_Datatype type = sizeof(nb_real) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE;
    for (size_t done = 0; done < count;) {
        const int n = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + done, n, type, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "Allreduce");
        done += (size_t)n;
    }
    return NB_OK;
}

/* Started by a launcher: OpenMPI's mpirun, or a PMI/PMIx one (srun, hydra). */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE") || getenv("PMI_RANK");
}
#endif

int cli_dist_start(const char *cmd)
{
    if (dist_started) return 0;
    dist_started = 1;
#ifdef NB_HAVE_MPI
    if (!launched()) return 0;
    int provided, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
        fprintf(stderr, "nabla %s: MPI could not start (MPI_Init_thread failed)\n", cmd);
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_size);
    /* Errors come back as codes (messages), not as an abort inside MPI. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    dist_comm = (nb_comm){dist_rank, dist_size, mpi_allgather, mpi_alltoall, NULL, mpi_gather, mpi_allreduce};
#else
    (void)cmd;
#endif
    return 0;
}

int cli_dist_rank(void)
{
    return dist_rank;
}
int cli_dist_size(void)
{
    return dist_size;
}
const nb_comm *cli_dist_comm(void)
{
    return dist_size > 1 ? &dist_comm : NULL;
}

int cli_dist_end(int rc)
{
#ifdef NB_HAVE_MPI
    int init = 0;
    MPI_Initialized(&init);
    if (!init) return rc;
    if (rc == 1 && dist_size > 1 && !dist_refused) {
        fflush(stdout), fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
#endif
    return rc;
}

void cli_dist_range(int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = n * dist_rank / dist_size;
    *hi = n * (dist_rank + 1) / dist_size;
}

int cli_dist_sum(double *buf, int n)
{
#ifdef NB_HAVE_MPI
    if (dist_size > 1 && MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return 1;
#else
    (void)buf, (void)n;
#endif
    return 0;
}

int cli_dist_gather(const void *send, size_t bytes, void *recv)
{
    if (dist_size == 1) {
        if (bytes) memcpy(recv, send, bytes);
        return 0;
    }
#ifdef NB_HAVE_MPI
    if (bytes > INT_MAX) return 1;
    int mine = (int)bytes, *counts = calloc((size_t)dist_size, sizeof(int)),
        *displs = calloc((size_t)dist_size, sizeof(int));
    int rc = !counts || !displs;
    if (!rc) rc = MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS;
    long long total = 0;
    for (int r = 0; r < dist_size && !rc && dist_rank == 0; r++) {
        displs[r] = (int)total;
        total += counts[r];
        if (total > INT_MAX) rc = 1;
    }
    if (!rc) rc = MPI_Gatherv(send, mine, MPI_BYTE, recv, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS;
    free(counts), free(displs);
    return rc;
#else
    return 1;
#endif
}

/* Every rank's 64-bit value, or NULL (one process: just its own). */
static uint64_t *gather_all(uint64_t h)
{
    uint64_t *all = calloc((size_t)dist_size, sizeof *all);
    if (!all) return NULL;
    all[0] = h;
#ifdef NB_HAVE_MPI
    if (dist_size > 1 && MPI_Allgather(&h, 8, MPI_BYTE, all, 8, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(all);
        return NULL;
    }
#endif
    return all;
}

/* The first rank whose value differs from rank 0's, or 0; -1 on failure. */
static int first_different(uint64_t h)
{
    uint64_t *all = gather_all(h);
    if (!all) return -1;
    int r = 1;
    while (r < dist_size && all[r] == all[0])
        r++;
    free(all);
    return r < dist_size ? r : 0;
}

int cli_dist_same(const char *cmd, const char *what, const void *data, size_t len, const char *hint)
{
    if (dist_size == 1) return 0;
    int r = first_different(cli_dist_hash(data, len, 0xcbf29ce484222325ull));
    if (r == 0) return 0;
    dist_refused = 1;
    if (dist_rank == 0 && r < 0)
        fprintf(stderr, "nabla %s: the ranks could not compare %s (MPI_Allgather failed)\n", cmd, what);
    else if (dist_rank == 0)
        fprintf(stderr, "nabla %s: the ranks differ in %s: rank %d's is not rank 0's%s%s\n", cmd, what, r,
                hint ? "; " : "", hint ? hint : "");
    return 1;
}

int cli_dist_same_text(const char *cmd, const char *what, const char *text, const char *hint)
{
    if (dist_size == 1) return 0;
    const size_t len = strlen(text);
    int r = first_different(cli_dist_hash(text, len, 0xcbf29ce484222325ull));
    if (r == 0) return 0;
    dist_refused = 1;
    /* Rank 0 shows both texts: everyone sends theirs (collective). */
    char *all = dist_rank == 0 ? calloc(1, (size_t)dist_size * 1024) : NULL, mine[1024];
    snprintf(mine, sizeof mine, "%s", text);
#ifdef NB_HAVE_MPI
    MPI_Gather(mine, 1024, MPI_BYTE, all, 1024, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
    if (dist_rank == 0 && r > 0)
        fprintf(stderr, "nabla %s: the ranks differ in %s:\n  rank 0: %s\n  rank %d: %s\n%s%s%s", cmd, what,
                all ? all : "?", r, all ? all + (size_t)r * 1024 : "?", hint ? "  " : "", hint ? hint : "",
                hint ? "\n" : "");
    else if (dist_rank == 0)
        fprintf(stderr, "nabla %s: the ranks could not compare %s (MPI_Allgather failed)\n", cmd, what);
    free(all);
    return 1;
}

nb_tensor *cli_dist_rows(const nb_tensor *t, int64_t lo, int64_t hi)
{
    int64_t shape[NB_MAX_RANK];
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
    const int64_t row = t->shape[0] ? t->size / t->shape[0] : 0;
    shape[0] = hi - lo;
    nb_tensor *r = nb_tensor_new(t->rank, shape);
    if (r && r->size) memcpy(r->data, t->data + lo * row, (size_t)r->size * sizeof(nb_real));
    return r;
}

int cli_dist_gather_rows(nb_tensor **t, int64_t n)
{
    if (dist_size == 1) return 0;
    int64_t shape[NB_MAX_RANK];
    memcpy(shape, (*t)->shape, sizeof(int64_t) * (size_t)(*t)->rank);
    shape[0] = n;
    nb_tensor *all = dist_rank == 0 ? nb_tensor_new((*t)->rank, shape) : NULL;
    /* Every rank learns first whether rank 0 has the memory. */
    double bad = dist_rank == 0 && !all;
    if (cli_dist_sum(&bad, 1) || bad) {
        nb_set_error(NB_ERR_NOMEM, "rank 0 has no memory for all the ranks' rows (or MPI failed)");
        return 1;
    }
    if (cli_dist_gather((*t)->data, (size_t)(*t)->size * sizeof(nb_real), all ? all->data : NULL)) {
        nb_tensor_free(all);
        nb_set_error(NB_ERR_IO, "gathering the ranks' rows on rank 0 (MPI) failed");
        return 1;
    }
    if (dist_rank == 0) {
        nb_tensor_free(*t);
        *t = all;
    }
    return 0;
}

int cli_dist_check_rows(const char *cmd, int64_t n)
{
    if (n >= dist_size) return 0;
    dist_refused = 1;
    if (dist_rank == 0)
        fprintf(stderr,
                "nabla %s: %lld examples for %d processes: every process needs at least one; run fewer "
                "(mpirun -np %lld) or give more examples\n",
                cmd, (long long)n, dist_size, (long long)(n > 0 ? n : 1));
    return 1;
}

int cli_dist_refuse(const char *cmd, const char *why)
{
    dist_refused = 1;
    if (dist_rank == 0) fprintf(stderr, "nabla %s: %s\n", cmd, why);
    return 2;
}
