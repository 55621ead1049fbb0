/* xoshiro256** seeded through splitmix64: explicit state, no globals. */
#include "core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void nb_rng_seed(nb_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nb_rng_next(nb_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double nb_rng_uniform(nb_rng *r) { return (double)(nb_rng_next(r) >> 11) * 0x1.0p-53; }

double nb_rng_normal(nb_rng *r)
{
    /* Box-Muller; one of the pair is dropped to keep the state simple. */
    double u1 = nb_rng_uniform(r), u2 = nb_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void nb_tensor_fill_uniform(nb_tensor *t, nb_rng *r, double lo, double hi)
{
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (nb_real)(lo + (hi - lo) * nb_rng_uniform(r));
}

void nb_tensor_fill_normal(nb_tensor *t, nb_rng *r, double mean, double std)
{
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (nb_real)(mean + std * nb_rng_normal(r));
}
