/* nabla summary: a model's layer table (Keras's model.summary()) and its
 * parameters, or with --dot the model's graph as Graphviz DOT. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *input, *out;
    int allow_nonfinite, dot;
} summary_args;

#define F(field) offsetof(summary_args, field)
static const cli_opt summary_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL,
     "a model file (.safetensors), a spec file, or spec text, e.g.\n"
     "'conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10'",
     CLI_REQUIRED, 0, 0, NULL},
    {"--input", NULL, CLI_STR, F(input), "SHAPE", NULL,
     "input shape without the batch, e.g. 28,28,1 (needed for a spec;\n"
     "a .safetensors model carries its own)", 0, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL,
     "load a model file whose weights hold NaN or Inf (refused otherwise)", 0, 0, 0, NULL},
    {"--dot", NULL, CLI_FLAG, F(dot), NULL, NULL,
     "print the graph as Graphviz DOT instead (render: dot -Tpng model.dot -o model.png)", 0, 0, 0, NULL},
    {"--out", "-o", CLI_STR, F(out), "F", NULL, "--dot: write the DOT text to F (default: standard output)", 0, 0, 0,
     NULL},
};
#undef F

static const cli_spec summary_spec = {"summary",
                                      "--model M.safetensors|SPEC|SPEC-FILE [--input SHAPE] [--dot [-o F]]",
                                      "Prints the layers, their output shapes (N is the batch) and parameter counts,\n"
                                      "then every parameter's name and shape. --dot prints the graph instead: a node\n"
                                      "per layer (index, spec, output shape, parameters), edges from its inputs.\n",
                                      summary_opts,
                                      CLI_NOPTS(summary_opts),
                                      NULL};

/* -o without --dot: a usage error (2), else -1. */
static int check_summary(const summary_args *a)
{
    if (a->out && !a->dot) return cli_usage_error("summary", "%s writes the DOT graph: add --dot", "-o");
    return -1;
}

int cmd_summary_check_args(int argc, char **argv)
{
    summary_args a = {0};
    int rc = cli_parse(&summary_spec, argc, argv, &a);
    return rc >= 0 ? rc : check_summary(&a);
}

/* s as the inside of a DOT string: '"' and '\\' escaped. */
static void dot_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

/* The DOT id of the entry named ref before entry i ("input", or "nJ"). */
static void dot_ref(FILE *f, const nb_model *m, int i, const char *ref)
{
    for (int j = i - 1; j >= 0; j--)
        if (!strcmp(nb_model_layer(m, j)->name, ref)) {
            fprintf(f, "n%d", j);
            return;
        }
    fputs("input", f);
}

/* Parameters of layer i: the sizes of the parameters named "<i>.<...>". */
static long long layer_params(nb_model *m, int i)
{
    long long count = 0;
    for (int p = 0; p < nb_model_param_count(m); p++) {
        nb_node *n = nb_model_param(m, p);
        char *end;
        if (strtol(nb_node_name(n), &end, 10) == i && *end == '.') count += (long long)nb_value(n)->size;
    }
    return count;
}

/* A shape with the batch in front, "(N, 28, 28, 1)". */
static void dot_shape(FILE *f, int rank, const int64_t *shape)
{
    fputs("(N", f);
    for (int d = 0; d < rank; d++) fprintf(f, ", %lld", (long long)shape[d]);
    fputs(")", f);
}

/* One node per layer labelled "i: spec as NAME", its output shape and
 * parameter count; an edge from each of its inputs (the entry before it,
 * and the names add, concat and from reference). */
static void write_dot(FILE *f, nb_model *m)
{
    int64_t shape[NB_MAX_RANK];
    char lb[400];
    fputs("digraph model {\n  node [shape=box, fontname=\"monospace\"];\n  input [label=\"input\\n", f);
    dot_shape(f, nb_model_input_shape(m, shape), shape);
    fputs("\"];\n", f);
    for (int i = 0; i < nb_model_num_layers(m); i++) {
        const nb_layer_spec *l = nb_model_layer(m, i);
        fprintf(f, "  n%d [label=\"%d: ", i, i);
        dot_text(f, nb_layer_spec_str(l, lb, sizeof lb));
        fputs("\\n", f), dot_shape(f, nb_model_layer_shape(m, i, shape), shape);
        fprintf(f, "\\n%lld params\"];\n", layer_params(m, i));
        if (l->kind != NB_LAYER_FROM) {
            if (i)
                fprintf(f, "  n%d -> n%d;\n", i - 1, i);
            else
                fprintf(f, "  input -> n0;\n");
        }
        for (int k = 0; k < l->nrefs; k++)
            fputs("  ", f), dot_ref(f, m, i, l->refs[k]), fprintf(f, " -> n%d;\n", i);
    }
    fputs("}\n", f);
}

/* --dot: the graph to a.out or stdout; 0 or 1. */
static int summary_dot(const summary_args *a, nb_model *m)
{
    if (!a->out) {
        write_dot(stdout, m);
        return 0;
    }
    if (!cli_check_output("summary", "-o", a->out)) return 1;
    FILE *f = fopen(a->out, "w");
    if (!f) {
        fprintf(stderr, "nabla summary: cannot write '%s'; check the directory exists and is writable\n", a->out);
        return 1;
    }
    write_dot(f, m);
    if (fclose(f)) {
        fprintf(stderr, "nabla summary: writing '%s' failed (disk full?)\n", a->out);
        return 1;
    }
    fprintf(stderr, "wrote %s (render: dot -Tpng %s -o model.png)\n", a->out, a->out);
    return 0;
}

int cmd_summary(int argc, char **argv)
{
    summary_args a = {0};
    int rc = cli_parse(&summary_spec, argc, argv, &a);
    if (rc >= 0 || (rc = check_summary(&a)) >= 0) return rc;
    nb_model *m = NULL;
    if (cli_load_model_flags(a.model, a.input, NULL, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m))
        return cli_fail("summary", "building the model");
    if (a.dot) {
        rc = summary_dot(&a, m);
        nb_model_free(m);
        return rc;
    }
    /* A row is at most a 400-byte spec line, a shape and its inputs. */
    size_t n = 4096 + (size_t)nb_model_num_layers(m) * 1200 + (size_t)nb_model_param_count(m) * 200;
    char *buf = malloc(n);
    rc = 0;
    if (!buf) rc = cli_fail("summary", "out of memory");
    else if (nb_model_summary(m, buf, n)) rc = cli_fail("summary", NULL);
    else {
        printf("model: %s\n", nb_model_spec(m));
        fputs(buf, stdout);
    }
    free(buf);
    nb_model_free(m);
    return rc;
}
