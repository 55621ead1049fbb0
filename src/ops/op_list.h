/* The op registry's list: one line per op, NB_OP(id) for the descriptor
 * `const nb_op nb_op_<id>` defined in the op's own file (its name, typed
 * attributes, shape inference, forward, VJP, JVP and gradient-check cases).
 * Expanded by ops_internal.h (declarations) and registry.c (the table);
 * order is the order `nabla gradcheck` reports. Adding an op: its file and
 * one line here (docs/design.md, "How to add an op"). No include guard: it
 * is included once per expansion. */
/* unary.c */
NB_OP(neg)
NB_OP(exp)
NB_OP(log)
NB_OP(sqrt)
NB_OP(abs)
NB_OP(pow)
NB_OP(scale)
NB_OP(sigmoid)
NB_OP(tanh)
NB_OP(relu)
NB_OP(leaky_relu)
NB_OP(elu)
NB_OP(softplus)
NB_OP(gelu)
/* binary.c */
NB_OP(add)
NB_OP(sub)
NB_OP(mul)
NB_OP(div)
/* matmul.c */
NB_OP(matmul)
/* conv2d.c */
NB_OP(conv2d)
NB_OP(conv2d_relu_maxpool)
/* pool.c */
NB_OP(max_pool2d)
NB_OP(avg_pool2d)
/* reduce.c */
NB_OP(sum)
NB_OP(mean)
/* shape.c */
NB_OP(transpose)
NB_OP(reshape)
NB_OP(flatten)
/* concat.c */
NB_OP(concat)
/* softmax.c */
NB_OP(softmax)
NB_OP(log_softmax)
/* loss.c */
NB_OP(mse_loss)
NB_OP(bce_logits_loss)
NB_OP(cce_logits_loss)
NB_OP(cce_logits_probs_loss)
/* dropout.c */
NB_OP(dropout)
/* batchnorm.c */
NB_OP(batchnorm)
/* layernorm.c */
NB_OP(layernorm)
