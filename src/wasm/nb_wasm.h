/* The page's C API (src/wasm/nb_wasm.c, nb_wasm_net.c): plain types only, so
 * that JavaScript can call it through WebAssembly exports. */
#ifndef NB_WASM_H
#define NB_WASM_H

#include <stddef.h>

#include "nabla.h"

/* Exported from the WebAssembly module under its C name; natively (the test
 * tests/f32/test_wasm_api.c) an ordinary function. */
#if defined(__wasm__)
#define NBW_EXPORT(name) __attribute__((export_name(#name)))
#else
#define NBW_EXPORT(name)
#endif

enum { NBW_GD_QUADRATIC = 0, NBW_GD_DOUBLE_WELL, NBW_GD_SOFTPLUS, NBW_GD_COUNT };
enum { NBW_CHAIN_COUNT = 8 };

const char *nbw_error(void);
void *nbw_malloc(size_t bytes);
void nbw_free(void *p);

nb_status nbw_gd(int fn, double x0, double lr, int steps, float *xs, float *fs, float *grads);
nb_status nbw_gd_curve(int fn, const float *x, int n, float *y);
nb_status nbw_chain(const int *fs, double x0, float *out);

typedef struct nbw_net nbw_net;
/* input_shape: rank dims without the batch, e.g. {2} or {28, 28, 1}. */
nbw_net *nbw_net_new(const char *spec, int rank, const int *input_shape, int loss_kind, int seed);
void nbw_net_free(nbw_net *h);
nb_status nbw_net_optim(nbw_net *h, int kind, double lr);
int nbw_net_param_count(nbw_net *h);
const char *nbw_net_param_name(nbw_net *h, int i);
float *nbw_net_param_data(nbw_net *h, int i);
int nbw_net_param_size(nbw_net *h, int i);
float *nbw_net_param_grad(nbw_net *h, int i);
int nbw_net_layer_count(nbw_net *h);
int nbw_net_layer_shape(nbw_net *h, int i, int *shape);
double nbw_net_train(nbw_net *h, const float *x, const float *y, int n, int batch, int steps);
double nbw_net_loss(nbw_net *h, const float *x, const float *y, int n);
float *nbw_net_predict(nbw_net *h, const float *x, int n);
float *nbw_net_layer_value(nbw_net *h, int i);
float *nbw_net_input_jacobian(nbw_net *h, const float *x, int n);
float *nbw_net_layer_jacobian(nbw_net *h, int i, const float *x, int *shape, int *rank);
float *nbw_net_saliency(nbw_net *h, const float *x, int c);
double nbw_net_lambda_max(nbw_net *h, const float *x, const float *y, int n, double tol, int max_iter, int *iters,
                          int *products);

#endif
