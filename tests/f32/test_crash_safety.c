/* Crash safety: 'nabla train' is SIGKILLed at seeded random moments, many
 * times. After every kill the checkpoint on disk, if there is one, must load;
 * '--resume' then continues, and the run that finally completes must end with
 * exactly (bit for bit) the weights and optimiser state of a run that was
 * never interrupted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"

#define KILLS 30
#define EPOCHS "6"

static char dir[1024];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Starts 'nabla train' writing to out (resuming if asked); returns its pid. */
static pid_t start_train(const char *data, const char *out, int resume, const char *log)
{
    const char *args[] = {NB_CLI,      "train",     "--data",      data,      "--model",
                          "conv2d 8 3 relu; maxpool 2; flatten; dense 10", "--limit", "1024",
                          "--epochs",  EPOCHS,      "--batch",     "32",      "--seed",
                          "7",         "--threads", "1",           "--out",   out,
                          "--no-test", "--quiet",   resume ? "--resume" : NULL, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(NB_CLI, (char **)args);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Every tensor of a and b has the same shape and the same bits. */
static void assert_same_tensors(const char *a, const char *b)
{
    nb_safetensors *x = NULL, *y = NULL;
    assert_int_equal(nb_safetensors_read(a, &x), NB_OK);
    assert_int_equal(nb_safetensors_read(b, &y), NB_OK);
    assert_int_equal(nb_safetensors_count(x), nb_safetensors_count(y));
    assert_true(nb_safetensors_count(x) >= 4);
    for (int i = 0; i < nb_safetensors_count(x); i++) {
        const char *name = nb_safetensors_name(x, i);
        const nb_tensor *s = nb_safetensors_get(x, name), *t = nb_safetensors_get(y, name);
        assert_non_null(t);
        assert_int_equal(s->rank, t->rank);
        assert_int_equal(s->size, t->size);
        assert_memory_equal(s->data, t->data, (size_t)s->size * sizeof(nb_real));
    }
    assert_string_equal(nb_safetensors_meta(x, "nabla.epoch"), EPOCHS);
    assert_string_equal(nb_safetensors_meta(y, "nabla.epoch"), EPOCHS);
    assert_string_equal(nb_safetensors_meta(x, "nabla.step"), nb_safetensors_meta(y, "nabla.step"));
    nb_safetensors_free(x);
    nb_safetensors_free(y);
}

static void test_sigkill_and_resume(void **state)
{
    (void)state;
    char data[1100], ref[1100], ck[1100], log[1100];
    tu_fmt(data, sizeof data, "%s/data", dir);
    tu_fmt(ref, sizeof ref, "%s/ref.safetensors", dir);
    tu_fmt(ck, sizeof ck, "%s/ck.safetensors", dir);
    tu_fmt(log, sizeof log, "%s/train.log", dir);
    mkdir(data, 0755);
    tu_write_dataset(data, "train", 1024, 1024, 16, 16, 10, 0);

    /* The uninterrupted run, timed: kills are drawn over its length. */
    double t0 = now();
    assert_int_equal(wait_status(start_train(data, ref, 0, log)), 0);
    double span = now() - t0;
    assert_true(span > 0);

    /* Cycles of interrupted training from scratch: kill at a seeded random
     * moment in [0, 1.1 span) of each run, resume, until a run completes;
     * then compare with the uninterrupted run and start again. */
    uint64_t rng = 0x5eed5eedULL; /* fixed: the same kill schedule every run */
    int kills = 0, runs = 0, loads = 0, cycles = 0;
    /* Sanitizer builds are 10-20 times slower: fewer kills keep the test
     * near a minute there. */
    const int target = span < 1.5 ? KILLS : 10;
    while (kills < target) {
        unlink(ck);
        cycles++;
        for (int finished = 0; !finished;) {
            int resume = access(ck, F_OK) == 0;
            pid_t pid = start_train(data, ck, resume, log);
            runs++;
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            double frac = (double)(rng >> 11) / 9007199254740992.0; /* [0, 1) */
            double delay = frac * span * 1.1;
            /* Sleep until the moment, or until the run ends by itself. */
            int rc = -1, st;
            for (double t1 = now(); rc < 0 && now() - t1 < delay;) {
                if (waitpid(pid, &st, WNOHANG) == pid) rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                else nanosleep(&(struct timespec){0, 500000}, NULL);
            }
            if (rc < 0) {
                kill(pid, SIGKILL);
                rc = wait_status(pid);
            }
            if (rc == 128 + SIGKILL) {
                kills++;
            } else {
                assert_int_equal(rc, 0); /* it finished before the kill */
                finished = 1;
            }
            /* Whatever the moment, the checkpoint on disk is whole. */
            if (access(ck, F_OK) == 0) {
                nb_model *m = NULL;
                nb_status s = nb_model_load(ck, &m);
                if (s) fprintf(stderr, "checkpoint after kill %d: %s\n", kills, nb_last_error());
                assert_int_equal(s, NB_OK);
                nb_model_free(m);
                loads++;
            }
            assert_true(runs < 20 * KILLS);
        }
        assert_same_tensors(ref, ck);
    }
    print_message("%d kills in %d cycles of %d runs, %d checkpoint loads, all bit-identical; uninterrupted run "
                  "%.2f s\n",
                  kills, cycles, runs, loads, span);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir, "crash");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sigkill_and_resume)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
