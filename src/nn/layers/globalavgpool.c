/* globalavgpool: (N, H, W, C) -> (N, C), y[n, c] = mean over h, w of x[n, h, w, c]
 * (the mean op over axes 1 and 2; its Jacobian is 1 / (H W) on each window). */
#include "layers.h"

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    (void)l;
    if (!nb_layer_need_rank(c, x, 4, "globalavgpool needs an image input (N, H, W, C)", "")) return NULL;
    return nb_layer_finish(nb_mean(x, 2, (const int[]){1, 2}, 0), NB_ACT_NONE, pre);
}

const nb_layer_type nb_layer_globalavgpool = {
    .kind = NB_LAYER_GLOBALAVGPOOL,
    .keyword = "globalavgpool",
    .example = "globalavgpool",
    .build = build,
};
