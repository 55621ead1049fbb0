/* nabla under mpirun (registered only when CMake found MPI): data-parallel
 * training with --reproducible gives the same bits as one process for
 * P = 1..4 and 1 or 2 threads, without it (MPI_Allreduce of the ranks'
 * gradients) the weights of one process within float rounding, ranks that differ are refused at start-up, a rank killed with
 * SIGKILL ends the job and its last checkpoint resumes (with another P) to
 * the same bits as an uninterrupted run, eval / predict / jacobian split
 * their examples (the full input Jacobian its rows) and match one
 * process, and curvature sums its HVPs over
 * the ranks' shards to the same eigenvalues. Tiny model and data (a few
 * hundred Fashion-MNIST images), so the whole program runs in seconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "nabla.h"
#include "nb_test_shell.h"

#define CLI NB_BINARY_DIR "/nabla"
#define TMP NB_BINARY_DIR "/mpi_test_"
#define TMP_BASE "mpi_test_" /* TMP seen from a sibling directory of it */
#define FASHION "/usr/share/datasets/fashion-mnist"
/* Leak checking is off inside mpirun's processes: OpenMPI keeps memory
 * until exit from plugins it has unloaded (unsymbolised, so no suppression
 * matches). The single-process runs here keep it on. */
#define MPIRUN NB_MPIEXEC " --oversubscribe --allow-run-as-root -x ASAN_OPTIONS=detect_leaks=0"
/* 540 training images (60 held out), batch 50: the last batch has 40, so
 * its shards are 16, 16 and 8. */
#define TRAIN                                                                                                          \
    " train --data fashion-mnist --model 'conv2d 4 3 relu; maxpool 2; flatten; dense 10' --limit 600 "                 \
    "--batch 50 --epochs 2 --no-test --seed 3"

static int have_data;
static char ref_losses[512]; /* the reference run's last epoch line, without timings */

/* The two files hold the same bytes (a model file: the same weights, spec
 * and optimiser state, bit for bit). */
static int same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && na > 0 && memcmp(x, y, na) == 0;
    if (!same) print_error("%s and %s differ (%zu and %zu bytes)\n", a, b, na, nb);
    free(x), free(y);
    return same;
}

/* The line of the output that starts with prefix, into line. */
static int line_of(const char *prefix, char *line, size_t n)
{
    for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) {
            size_t k = strcspn(p, "\n");
            snprintf(line, n, "%.*s", (int)k, p);
            return 1;
        }
    print_error("no line starting with '%s' in:\n%s\n", prefix, out);
    return 0;
}

/* The part of an epoch line that must not depend on P (no timings). */
static int epoch_losses(const char *prefix, char *buf, size_t n)
{
    char line[512];
    if (!line_of(prefix, line, sizeof line)) return 0;
    char *bar = strrchr(line, '|');
    if (bar) *bar = '\0';
    snprintf(buf, n, "%s", line);
    return 1;
}

static int setup(void **state)
{
    (void)state;
    struct stat st;
    have_data = stat(FASHION "/t10k-images-idx3-ubyte.gz", &st) == 0;
    if (!have_data) return 0;
    /* The reference: one process, one thread. */
    if (run(CLI TRAIN " --reproducible --threads 1 --out " TMP "ref.safetensors")) return -1;
    if (!epoch_losses("epoch 2/2:", ref_losses, sizeof ref_losses)) return -1;
    nb_dataset d = {0};
    if (nb_dataset_load_mnist(FASHION, "test", &d)) return -1;
    int64_t xs[4] = {7, 28, 28, 1};
    nb_tensor *x = nb_tensor_from(4, xs, d.x->data);
    int bad = !x || nb_npy_write(TMP "x.npy", x);
    nb_tensor_free(x);
    nb_dataset_free(&d);
    return bad ? -1 : 0;
}

static void test_train_same_bits(void **state)
{
    (void)state;
    if (!have_data) skip();
    char got[512];
    /* It learned: 10 classes, chance is 0.1. */
    double acc = 0;
    assert_int_equal(sscanf(strstr(ref_losses, "val_acc") + 8, "%lf", &acc), 1);
    assert_true(acc > 0.3);

    assert_int_equal(run(CLI TRAIN " --reproducible --threads 2 --out " TMP "t2.safetensors"), 0);
    assert_true(same_file(TMP "ref.safetensors", TMP "t2.safetensors"));

    static const char *const runs[][2] = {{"2", "1"}, {"2", "2"}, {"3", "1"}, {"4", "1"}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, TMP "np%s_t%s.safetensors", runs[i][0], runs[i][1]);
        assert_int_equal(
            run(MPIRUN " -np %s " CLI TRAIN " --reproducible --threads %s --out %s", runs[i][0], runs[i][1], path), 0);
        char first[64];
        snprintf(first, sizeof first, "%s processes x %s thread%s, reproducible\n", runs[i][0], runs[i][1],
                 strcmp(runs[i][1], "1") ? "s" : "");
        assert_true(contains(first));
        assert_int_equal(count_of("epoch 2/2:"), 1); /* rank 0 alone prints */
        assert_true(epoch_losses("epoch 2/2:", got, sizeof got));
        assert_string_equal(got, ref_losses);
        assert_true(same_file(TMP "ref.safetensors", path));
    }
}

static void test_refusals(void **state)
{
    (void)state;
    if (!have_data) skip();
    /* Rank 1 with another learning rate. */
    assert_int_not_equal(run(MPIRUN " -np 2 sh -c '[ $OMPI_COMM_WORLD_RANK = 1 ] && L=0.01 || L=0.001; exec " CLI
                                    " train --data fashion-mnist --model \"flatten; dense 10\" --limit 100 --lr $L "
                                    "--no-test --out " TMP "x.safetensors'"),
                         0);
    assert_true(contains("the ranks differ in options"));
    assert_true(contains("--lr 0.01"));
    /* The same command line on data files that differ (two directories). */
    assert_int_equal(system("mkdir -p " TMP "a " TMP "b && printf 'u,v,label\\n0,1,0\\n1,0,1\\n' > " TMP "a/d.csv"
                            " && printf 'u,v,label\\n0,1,1\\n1,0,0\\n' > " TMP "b/d.csv"),
                     0);
    const char *csv = " train --data d.csv --model 'dense 2' --val-split 0 --no-test --out m.safetensors";
    assert_int_not_equal(run(MPIRUN " -np 1 --wdir " TMP "a " CLI "%s : -np 1 --wdir " TMP "b " CLI "%s", csv, csv), 0);
    assert_true(contains("the ranks differ in the training data"));
    /* The same --model file name, holding another spec or other weights. */
    assert_int_equal(
        system("cd " TMP "a && " CLI " train --data d.csv --model 'dense 2' --val-split 0 --no-test "
               "--quiet --out m.safetensors --seed 1 && cd ../" TMP_BASE "b && cp ../" TMP_BASE "a/d.csv d.csv && " CLI
               " train --data d.csv "
               "--model 'dense 4 relu; dense 2' --val-split 0 --no-test --quiet --out m.safetensors && " CLI
               " train --data d.csv --model 'dense 2' --val-split 0 --no-test --quiet --seed 2 "
               "--out w.safetensors && cp ../" TMP_BASE "a/m.safetensors ../" TMP_BASE "a/w.safetensors"),
        0);
    const char *spec = " train --data d.csv --model m.safetensors --val-split 0 --no-test --out o.safetensors";
    assert_int_not_equal(run(MPIRUN " -np 1 --wdir " TMP "a " CLI "%s : -np 1 --wdir " TMP "b " CLI "%s", spec, spec),
                         0);
    assert_true(contains("the ranks differ in the model spec"));
    assert_true(contains("rank 1: dense 4 relu; dense 2"));
    const char *wts = " train --data d.csv --model w.safetensors --val-split 0 --no-test --out o.safetensors";
    assert_int_not_equal(run(MPIRUN " -np 1 --wdir " TMP "a " CLI "%s : -np 1 --wdir " TMP "b " CLI "%s", wts, wts), 0);
    assert_true(contains("the ranks differ in the initial weights"));
    /* jacobian w.r.t. the input needs --per-example, --compare one process;
     * predict needs an example per process. */
    assert_int_equal(run(MPIRUN " -np 2 " CLI " jacobian --model " TMP "ref.safetensors --input " TMP
                                "x.npy --per-example --compare"),
                     2);
    assert_true(contains("--compare and --kinks run in one process"));
    assert_int_equal(run(MPIRUN " -np 2 " CLI " jacobian --model " TMP "ref.safetensors --input " TMP
                                "x.npy --mode numeric -o " TMP "j.npy"),
                     2);
    assert_true(contains("under mpirun the full Jacobian w.r.t. the input runs by backprop"));
    assert_int_equal(count_of("runs by backprop"), 1); /* rank 0 alone says it */
    assert_int_equal(run(MPIRUN " -np 2 " CLI " jacobian --model " TMP "ref.safetensors --input " TMP
                                "x.npy --of 1 --wrt 0 -o " TMP "j.npy"),
                     2);
    assert_true(contains("--of LAYER and --wrt LAYER run in one process"));
    assert_int_not_equal(
        run(MPIRUN " -np 8 " CLI " predict --model " TMP "ref.safetensors --input " TMP "x.npy -o " TMP "p.npy"), 0);
    assert_true(contains("7 examples for 8 processes"));
}

/* Rank 1 is killed (SIGKILL) once the first checkpoint exists: the job ends
 * well within 30 s, non-zero, saying so; the checkpoint is whole, and a
 * --resume on 3 processes ends with the bits of an uninterrupted run
 * (--reproducible); the same kill on the plain path, and its resume. */
static void test_kill_and_resume(void **state)
{
    (void)state;
    if (!have_data) skip();
#define LONG                                                                                                           \
    " train --data fashion-mnist --model \"conv2d 4 3 relu; maxpool 2; flatten; dense 10\" --limit 800 "               \
    "--batch 16 --epochs 4 --no-test --seed 5 --threads 1 --out "
    remove(TMP "k.safetensors");
    int rc = run("timeout 30 " MPIRUN " -np 2 sh -c 'if [ $OMPI_COMM_WORLD_RANK = 1 ]; then (while [ ! -f " TMP
                 "k.safetensors ]; do sleep 0.02; done; kill -9 $$) & fi; exec " CLI LONG TMP
                 "k.safetensors --reproducible'");
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, 124); /* timeout's: the job hung */
    assert_true(contains("signal 9"));
    assert_int_equal(run(CLI " summary --model " TMP "k.safetensors"), 0);
    assert_int_equal(run(MPIRUN " -np 3 " CLI LONG TMP "k.safetensors --resume --reproducible"), 0);
    assert_true(contains("resuming after epoch"));
    assert_int_equal(run(CLI LONG TMP "whole.safetensors --reproducible"), 0);
    assert_true(same_file(TMP "k.safetensors", TMP "whole.safetensors"));
    /* The plain (allreduce) path: a rank killed inside MPI_Allreduce ends
     * the job the same way, and its checkpoint resumes on 3 processes. */
    remove(TMP "kp.safetensors");
    rc = run("timeout 30 " MPIRUN " -np 2 sh -c 'if [ $OMPI_COMM_WORLD_RANK = 1 ]; then (while [ ! -f " TMP
             "kp.safetensors ]; do sleep 0.02; done; kill -9 $$) & fi; exec " CLI LONG TMP "kp.safetensors'");
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, 124);
    assert_true(contains("signal 9"));
    assert_int_equal(run(CLI " summary --model " TMP "kp.safetensors"), 0);
    assert_int_equal(run(MPIRUN " -np 3 " CLI LONG TMP "kp.safetensors --resume"), 0);
    assert_true(contains("resuming after epoch"));
    assert_true(contains("epoch 4/4:"));
#undef LONG
}

/* The largest |a - b| over the weights of two model files, relative to
 * max(1, |b|). */
static double max_rel_diff(const char *a, const char *b)
{
    nb_model *x = NULL, *y = NULL;
    assert_int_equal(nb_model_load(a, &x), NB_OK);
    assert_int_equal(nb_model_load(b, &y), NB_OK);
    assert_int_equal(nb_model_param_count(x), nb_model_param_count(y));
    double worst = 0;
    for (int i = 0; i < nb_model_param_count(x); i++) {
        const nb_tensor *u = nb_value(nb_model_param(x, i)), *v = nb_value(nb_model_param(y, i));
        assert_int_equal(u->size, v->size);
        for (int64_t k = 0; k < u->size; k++) {
            double d = fabs((double)u->data[k] - (double)v->data[k]) / fmax(1, fabs((double)v->data[k]));
            if (!(d <= worst)) worst = d; /* NaN wins */
        }
    }
    nb_model_free(x);
    nb_model_free(y);
    return worst;
}

/* Without --reproducible, mpirun trains as PyTorch DDP: each rank's share
 * of the batch in one pass, the gradients summed by MPI_Allreduce. The
 * ranks' weights are the same (the epoch's hash check would stop the job
 * otherwise: exit 0 after 2 epochs says they matched), and within float
 * rounding of one process on the default path: 1e-6 relative to max(1, |w|)
 * after 22 Adam steps (3e-8 seen for P = 2, 2e-8 for P = 3, which splits
 * 50 as 16, 17, 17). */
static void test_plain_allreduce_close_to_one_process(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI TRAIN " --threads 1 --out " TMP "plain1.safetensors"), 0);
    char one[512], got[512];
    assert_true(epoch_losses("epoch 2/2:", one, sizeof one));
    for (int P = 2; P <= 3; P++) {
        char path[512], first[96];
        snprintf(path, sizeof path, TMP "plain%d.safetensors", P);
        assert_int_equal(run(MPIRUN " -np %d " CLI TRAIN " --threads 1 --out %s", P, path), 0);
        snprintf(first, sizeof first, "%d processes x 1 thread, allreduce (bits depend on P", P);
        assert_true(contains(first));
        assert_false(contains("thread, reproducible"));
        assert_int_equal(count_of("epoch 2/2:"), 1);
        assert_true(contains("gradient exchange (rank 0)"));
        assert_true(epoch_losses("epoch 2/2:", got, sizeof got));
        const double d = max_rel_diff(path, TMP "plain1.safetensors");
        print_message("P = %d: max relative weight difference to one process %.3g\n%s\n%s\n", P, d, one, got);
        assert_true(d <= 1e-6);
        assert_true(max_rel_diff(path, TMP "ref.safetensors") > 0); /* not the sharded path's bits */
    }
}

static nb_tensor *read_npy(const char *path)
{
    nb_tensor *t = NULL;
    assert_int_equal(nb_npy_read(path, &t), NB_OK);
    return t;
}

static void assert_same_npy(const char *a, const char *b)
{
    nb_tensor *x = read_npy(a), *y = read_npy(b);
    assert_int_equal(x->rank, y->rank);
    assert_int_equal(x->size, y->size);
    for (int i = 0; i < x->rank; i++)
        assert_int_equal(x->shape[i], y->shape[i]);
    double mx = 0, diff = 0;
    for (int64_t i = 0; i < x->size; i++) {
        diff = fmax(diff, fabs((double)x->data[i] - (double)y->data[i]));
        mx = fmax(mx, fabs((double)x->data[i]));
    }
    assert_true(mx > 0); /* not an all-zero result */
    assert_true(diff <= 1e-6 * mx);
    nb_tensor_free(x);
    nb_tensor_free(y);
}

static void test_split_eval_predict_jacobian(void **state)
{
    (void)state;
    if (!have_data) skip();
    const char *model = TMP "ref.safetensors";
    char one[512], two[512];
    assert_int_equal(run(CLI " eval --model %s --data fashion-mnist --limit 301", model), 0);
    assert_true(line_of("loss ", one, sizeof one));
    assert_int_equal(run(MPIRUN " -np 3 " CLI " eval --model %s --data fashion-mnist --limit 301", model), 0);
    assert_true(line_of("loss ", two, sizeof two));
    assert_string_equal(one, two);
    assert_int_equal(count_of("confusion matrix"), 1);

    assert_int_equal(run(CLI " predict --model %s --input " TMP "x.npy -o " TMP "p1.npy", model), 0);
    assert_int_equal(run(MPIRUN " -np 2 " CLI " predict --model %s --input " TMP "x.npy -o " TMP "p2.npy", model), 0);
    assert_same_npy(TMP "p1.npy", TMP "p2.npy");

    /* Examples split (per example, w.r.t. a parameter), and the full
     * Jacobian w.r.t. the input, whose rows (rev) or columns (fwd) the
     * library splits over the ranks. */
    const char *jac[] = {"--per-example", "--wrt 0.kernel --mode fwd", "--count 3 --mode rev", "--count 3 --mode fwd"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(run(CLI " jacobian --model %s --input " TMP "x.npy %s -o " TMP "j1.npy", model, jac[i]), 0);
        assert_int_equal(
            run(MPIRUN " -np 3 " CLI " jacobian --model %s --input " TMP "x.npy %s -o " TMP "j3.npy", model, jac[i]),
            0);
        assert_same_npy(TMP "j1.npy", TMP "j3.npy");
    }
}

/* curvature sums its HVPs over the ranks' shards: 200 examples in shards
 * of 50 on 1, 2 and 3 processes (3: runs of 1, 1 and 2 shards) print the
 * same eigenvalues, residuals and trace, digit for digit (the library
 * test asserts the bits). */
static void test_curvature_same_on_any_P(void **state)
{
    (void)state;
    if (!have_data) skip();
#define CURV                                                                                                           \
    " curvature --model " TMP "ref.safetensors --data fashion-mnist --count 200 --batch 50 --top 2 --trace "           \
    "--samples 4"
    char one[4096];
    assert_int_equal(run("OMP_NUM_THREADS=1 " CLI CURV), 0);
    const char *body = strstr(out, "lambda_1 = ");
    assert_non_null(body);
    assert_true(contains("trace (Hutchinson, 4 samples) = "));
    double l1 = 0;
    assert_int_equal(sscanf(body, "lambda_1 = %lf", &l1), 1);
    assert_true(l1 > 0);
    snprintf(one, sizeof one, "%s", body);
    for (int P = 2; P <= 3; P++) {
        assert_int_equal(run(MPIRUN " -x OMP_NUM_THREADS=1 -np %d " CLI CURV, P), 0);
        char over[64];
        snprintf(over, sizeof over, "(batches of 50 summed over %d processes)", P);
        assert_true(contains(over));
        assert_int_equal(count_of("lambda_1 = "), 1); /* rank 0 alone prints */
        body = strstr(out, "lambda_1 = ");
        assert_non_null(body);
        assert_string_equal(body, one);
    }
#undef CURV
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_same_bits),         cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_kill_and_resume),         cmocka_unit_test(test_split_eval_predict_jacobian),
        cmocka_unit_test(test_curvature_same_on_any_P),  cmocka_unit_test(test_plain_allreduce_close_to_one_process),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
