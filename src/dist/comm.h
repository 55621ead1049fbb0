/* Helpers over an nb_comm for the library's collectives (src/dist/comm.c):
 * checks, every rank's status, every rank's hash. Every rank calls them
 * together, in the same order. Depends on nabla.h alone. */
#ifndef NB_DIST_COMM_H
#define NB_DIST_COMM_H

#include "nabla.h"

/* NB_ERR_ARG (message naming who) unless c is NULL or a communicator of
 * rank 0 <= rank < size with both collectives. */
nb_status nb_comm_check(const nb_comm *c, const char *who);
/* 1 when c is a communicator nb_comm_check accepts (not NULL); no message. */
int nb_comm_usable(const nb_comm *c);
/* FNV-1a of n bytes, continuing from h (start: NB_HASH_START). */
#define NB_HASH_START 0xcbf29ce484222325ull
uint64_t nb_hash_bytes(uint64_t h, const void *p, size_t n);
/* Every rank's 8 bytes by allgather into g->all (rank order), which lies in
 * g itself up to NB_COMM_STACK_RANKS ranks: a rank that could not allocate
 * the array would skip the collective and leave the others waiting in it
 * for ever, so below that bound nothing fails before the collective (past
 * it the heap, and that hazard). NB_OK, or the failure with g->all NULL;
 * nb_comm_gathered_free after use. */
#define NB_COMM_STACK_RANKS 1024
typedef struct {
    uint64_t stack[NB_COMM_STACK_RANKS], *all;
} nb_comm_gathered;
nb_status nb_comm_gather_u64(const nb_comm *c, uint64_t mine, const char *who, nb_comm_gathered *g);
void nb_comm_gathered_free(nb_comm_gathered *g);
/* Every rank learns every rank's status: mine when it failed (its message
 * kept), else NB_ERR_ARG naming the first rank that failed, else NB_OK.
 * So no rank goes on into a collective that a failed rank skips. */
nb_status nb_comm_any_failed(const nb_comm *c, nb_status mine, const char *who);
/* NB_ERR_ARG on every rank when some rank's h differs from rank 0's:
 * "WHO: rank R's WHAT differ from rank 0's: HINT". */
nb_status nb_comm_same_hash(const nb_comm *c, uint64_t h, const char *who, const char *what, const char *hint);

#endif
