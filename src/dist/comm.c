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

nb_status nb_comm_gather_u64(const nb_comm *c, uint64_t mine, const char *who, nb_comm_gathered *g)
{
    g->all = c->size <= NB_COMM_STACK_RANKS ? g->stack : calloc((size_t)c->size, sizeof *g->all);
    if (!g->all) return nb_set_error(NB_ERR_NOMEM, "%s: out of memory", who);
    nb_status s = c->allgather(&mine, sizeof mine, g->all, c->user);
    if (s) {
        const char *m = nb_last_error();
        nb_set_error(s, "%s: comparing the ranks failed%s%s", who, m && *m ? ": " : "", m ? m : "");
        nb_comm_gathered_free(g);
    }
    return s;
}

void nb_comm_gathered_free(nb_comm_gathered *g)
{
    if (g->all != g->stack) free(g->all);
    g->all = NULL;
}

nb_status nb_comm_any_failed(const nb_comm *c, nb_status mine, const char *who)
{
    if (!c || c->size < 2) return mine;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mine ? nb_last_error() : "");
    nb_status s = NB_OK;
    nb_comm_gathered g;
    s = nb_comm_gather_u64(c, (uint64_t)mine, who, &g);
    for (int r = 0; g.all && r < c->size && !s && !mine; r++)
        if (g.all[r]) s = nb_set_error(NB_ERR_ARG, "%s: rank %d failed (its own message says why)", who, r);
    nb_comm_gathered_free(&g);
    if (mine) return nb_set_error(mine, "%s", msg);
    return s;
}

nb_status nb_comm_same_hash(const nb_comm *c, uint64_t h, const char *who, const char *what, const char *hint)
{
    if (!c || c->size < 2) return NB_OK;
    nb_status s = NB_OK;
    nb_comm_gathered g;
    s = nb_comm_gather_u64(c, h, who, &g);
    for (int r = 1; g.all && r < c->size && !s; r++)
        if (g.all[r] != g.all[0])
            s = nb_set_error(NB_ERR_ARG, "%s: rank %d's %s differ from rank 0's: %s", who, r, what, hint);
    nb_comm_gathered_free(&g);
    return s;
}
