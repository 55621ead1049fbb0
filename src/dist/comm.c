/* Helpers over an nb_comm (see comm.h). */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>

int nb_comm_usable(const nb_comm *c)
{
    return c && c->size >= 1 && c->rank >= 0 && c->rank < c->size && c->allgather && c->alltoall;
}

nb_status nb_comm_check(const nb_comm *c, const char *who)
{
    if (c && !nb_comm_usable(c))
        return nb_set_error(NB_ERR_ARG, "%s: communicator with rank %d of %d processes or without its collectives", who,
                            c->rank, c->size);
    return NB_OK;
}

uint64_t nb_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Every rank's 8 bytes into a new array (NULL on failure, *s set). */
static uint64_t *gather_all(const nb_comm *c, uint64_t mine, const char *who, nb_status *s)
{
    uint64_t *all = calloc((size_t)c->size, sizeof *all);
    if (!all) {
        *s = nb_set_error(NB_ERR_NOMEM, "%s: out of memory", who);
        return NULL;
    }
    if ((*s = c->allgather(&mine, sizeof mine, all, c->user))) {
        const char *m = nb_last_error();
        nb_set_error(*s, "%s: comparing the ranks failed%s%s", who, m && *m ? ": " : "", m ? m : "");
        free(all);
        return NULL;
    }
    return all;
}

nb_status nb_comm_any_failed(const nb_comm *c, nb_status mine, const char *who)
{
    if (!c || c->size < 2) return mine;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mine ? nb_last_error() : "");
    nb_status s = NB_OK;
    uint64_t *all = gather_all(c, (uint64_t)mine, who, &s);
    for (int r = 0; all && r < c->size && !s && !mine; r++)
        if (all[r]) s = nb_set_error(NB_ERR_ARG, "%s: rank %d failed (its own message says why)", who, r);
    free(all);
    if (mine) return nb_set_error(mine, "%s", msg);
    return s;
}

nb_status nb_comm_same_hash(const nb_comm *c, uint64_t h, const char *who, const char *what, const char *hint)
{
    if (!c || c->size < 2) return NB_OK;
    nb_status s = NB_OK;
    uint64_t *all = gather_all(c, h, who, &s);
    for (int r = 1; all && r < c->size && !s; r++)
        if (all[r] != all[0])
            s = nb_set_error(NB_ERR_ARG, "%s: rank %d's %s differ from rank 0's: %s", who, r, what, hint);
    free(all);
    return s;
}
