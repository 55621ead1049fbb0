/* The CLI's declarative options: each command declares its options in one
 * table (cli_opt), which both parses its arguments (cli_parse) and prints its
 * --help (cli_print_help), so that the two never disagree.
 *
 * Parsing is the same for every command: `--name value` and `--name=value`,
 * flags without a value, `-h`/`--help`, every number parsed strictly (the
 * whole text, in range, finite), choices by name, a "did you mean" for
 * unknown options and choices, and the required options listed when
 * missing. Usage errors print "nabla CMD: WHAT" and "(see 'nabla CMD
 * --help')" on stderr and give exit status 2. */
#ifndef NB_CLI_OPTIONS_H
#define NB_CLI_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
    CLI_FLAG,   /* int, set to 1 when present; takes no value */
    CLI_STR,    /* const char *, pointing into argv */
    CLI_INT,    /* long long in [lo, hi] */
    CLI_REAL,   /* double, finite, in [lo, hi] (or (lo, hi] with CLI_GT_LO) */
    CLI_CHOICE, /* int: the value of the chosen name in choices */
} cli_opt_type;

/* A choice's name and the value stored for it (an enum's value). A list of
 * choices ends with {NULL, 0}. */
typedef struct {
    const char *name;
    int value;
} cli_choice;

enum {
    CLI_REQUIRED = 1, /* the option must be given */
    CLI_GT_LO = 2,    /* CLI_REAL: lo itself is excluded (x > lo) */
};

typedef struct {
    const char *name;    /* "--epochs" */
    const char *alias;   /* "-o", or NULL */
    cli_opt_type type;
    size_t offset;       /* offsetof(the command's args struct, field) */
    const char *metavar; /* "E" in "--epochs E"; choices print as a|b|c when NULL */
    const char *def;     /* the default as the user would type it, or NULL (field left as initialised) */
    const char *help;    /* one line or several ('\n'); "(default ...)" is added from def */
    unsigned flags;      /* CLI_REQUIRED, CLI_GT_LO */
    double lo, hi;       /* CLI_INT, CLI_REAL: the allowed range; lo == hi == 0: any finite number */
    const cli_choice *choices; /* CLI_CHOICE */
} cli_opt;

typedef struct {
    const char *name;  /* "train", "demo gd" */
    const char *usage; /* what follows "usage: nabla NAME " */
    const char *about; /* paragraphs before the options, or NULL */
    const cli_opt *opts;
    int nopts;
    const char *notes; /* paragraphs after the options, or NULL */
} cli_spec;

#define CLI_NOPTS(table) ((int)(sizeof(table) / sizeof((table)[0])))

/* Fills args with the defaults, then parses argv[1..argc-1] into it (argv[0]
 * is the command's name). -1: parsed, run the command; 0: --help was printed
 * (to stdout); 2: a usage error was printed (to stderr). */
int cli_parse(const cli_spec *spec, int argc, char **argv, void *args);
void cli_print_help(const cli_spec *spec, FILE *f);

/* The closest of n candidate names to word (edit distance, or a unique
 * prefix), or NULL when none is close enough to be a likely typo. */
const char *cli_did_you_mean(const char *word, const char *const *names, int n);
/* The name of value in choices, or "?" */
const char *cli_choice_name(const cli_choice *choices, int value);

#endif
