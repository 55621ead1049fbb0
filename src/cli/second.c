/* What nabla hvp and hessian share: the model with its loss on a batch of
 * inputs and labels, in training mode with dropout off (--eval: inference
 * mode), the forward pass run; and the loss line both print. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

nb_status cli_second_setup(const cli_second_args *a, cli_second *out)
{
    memset(out, 0, sizeof *out);
    const char *labels = a->labels, *loss_name = nb_loss_name((nb_loss_kind)a->loss);
    nb_status s = cli_load_trained_model(a->model, &out->m);
    nb_node *target;
    if (!s) s = nb_model_loss(out->m, (nb_loss_kind)a->loss, &target, &out->loss);
    if (!s) s = cli_load_input(a->input, out->m, &out->x, NULL);
    if (!s && !cli_is_file(labels)) s = nb_set_error(NB_ERR_IO, "labels '%s': no such file", labels);
    if (!s) s = nb_npy_read(labels, &out->y);
    if (!s) s = nb_model_set_batch(out->m, out->x->shape[0]);
    if (s) return s;
    const nb_tensor *t = nb_value(target);
    char s1[96], s2[96];
    if (out->y->size != t->size) /* the loss checks class indices in its forward pass */
        return nb_set_error(NB_ERR_SHAPE, "labels '%s' have shape %s; %s needs %s for %lld examples", labels,
                            nb_shape_str(out->y->rank, out->y->shape, s1, sizeof s1), loss_name,
                            nb_shape_str(t->rank, t->shape, s2, sizeof s2), (long long)out->x->shape[0]);
    memcpy(nb_value(nb_model_input(out->m))->data, out->x->data, (size_t)out->x->size * sizeof(nb_real));
    memcpy(nb_value(target)->data, out->y->data, (size_t)out->y->size * sizeof(nb_real));
    nb_graph_set_training(nb_model_graph(out->m), a->eval ? NB_INFERENCE : NB_TRAINING_NO_DROPOUT, 0);
    return nb_forward(nb_model_graph(out->m));
}

void cli_second_print_loss(const cli_second_args *a, const cli_second *c)
{
    char lv[32];
    printf("loss (%s, mean over %lld examples): %s\n", nb_loss_name((nb_loss_kind)a->loss), (long long)c->x->shape[0],
           nb_format_real(nb_value(c->loss)->data[0], lv, sizeof lv));
}

void cli_second_free(cli_second *c)
{
    nb_tensor_free(c->x);
    nb_tensor_free(c->y);
    nb_model_free(c->m);
    memset(c, 0, sizeof *c);
}
