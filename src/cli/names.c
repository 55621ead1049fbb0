/* The names the CLI accepts for the library's enums, in one place. When the
 * library offers nb_*_parse / nb_*_name for them (issue 11, point 4), these
 * tables give way to those. */
#include "cli.h"

const cli_choice cli_losses[] = {{"cce", NB_LOSS_CCE}, {"mse", NB_LOSS_MSE}, {"bce", NB_LOSS_BCE}, {0, 0}};
const cli_choice cli_optimizers[] = {
    {"sgd", NB_OPT_SGD}, {"adam", NB_OPT_ADAM}, {"adamw", NB_OPT_ADAMW}, {"rmsprop", NB_OPT_RMSPROP}, {0, 0}};
const cli_choice cli_schedules[] = {{"constant", NB_SCHED_CONSTANT},
                                    {"step", NB_SCHED_STEP},
                                    {"exp", NB_SCHED_EXPONENTIAL},
                                    {"cosine", NB_SCHED_COSINE},
                                    {0, 0}};
const cli_choice cli_inits[] = {{"glorot", NB_INIT_GLOROT_UNIFORM},
                                {"he", NB_INIT_HE_UNIFORM},
                                {"he-normal", NB_INIT_HE_NORMAL},
                                {"torch", NB_INIT_TORCH_DEFAULT},
                                {0, 0}};
const cli_choice cli_jac_modes[] = {
    {"auto", NB_JAC_AUTO}, {"rev", NB_JAC_REV}, {"fwd", NB_JAC_FWD}, {"numeric", NB_JAC_NUMERIC}, {0, 0}};
const cli_choice cli_splits[] = {{"test", CLI_SPLIT_TEST}, {"train", CLI_SPLIT_TRAIN}, {0, 0}};
