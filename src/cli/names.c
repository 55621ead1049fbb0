/* The names the CLI accepts for the library's enums: the library's own
 * (nb_loss_name and the others, src/nn/names.c, each list once), copied
 * into option choices the first time the CLI parses its arguments. Only
 * --split, the CLI's own, is written here. */
#include "cli.h"

#include <string.h>

enum { MAX_CHOICES = 16 };

cli_choice cli_losses[MAX_CHOICES + 1], cli_optimizers[MAX_CHOICES + 1], cli_schedules[MAX_CHOICES + 1],
    cli_inits[MAX_CHOICES + 1], cli_jac_modes[MAX_CHOICES + 1];
const cli_choice cli_splits[] = {{"test", CLI_SPLIT_TEST}, {"train", CLI_SPLIT_TRAIN}, {0, 0}};

/* The enum's values 0, 1, ... while the library names them ("?" past the end). */
#define FILL(table, name_fn, type)                                                                                    \
    for (int v = 0; v < MAX_CHOICES && strcmp(name_fn((type)v), "?"); v++) table[v] = (cli_choice){name_fn((type)v), v}

void cli_choices_init(void)
{
    static int done;
    if (done) return;
    done = 1;
    FILL(cli_losses, nb_loss_name, nb_loss_kind);
    FILL(cli_optimizers, nb_optimizer_name, nb_optimizer);
    FILL(cli_schedules, nb_schedule_name, nb_schedule);
    FILL(cli_inits, nb_init_name, nb_init);
    FILL(cli_jac_modes, nb_jac_mode_name, nb_jac_mode);
}
