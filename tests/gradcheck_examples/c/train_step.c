/* The trainer's kernels behind symsoft check's C convention:
   void fn(const float *z, const int64_t *labels, float *grad, size_t n), K from -DK=... */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train_kernels.h" /* from include/: --cflags "-Iinclude" */

#ifndef K
#error "compile with -DK=<classes>"
#endif

static void backward(const float *z, const int64_t *labels, float *grad, size_t n, float dloss) {
    float *probs = malloc(n * K * sizeof(float));
    float *dlosses = malloc(n * sizeof(float));
    int *targets = malloc(n * sizeof(int));
    for (size_t r = 0; r < n; r++) {
        dlosses[r] = dloss;
        targets[r] = (int)labels[r];
    }
    softmax_forward(probs, z, (int)n, K);
    memset(grad, 0, n * K * sizeof(float));
    crossentropy_softmax_backward(grad, dlosses, probs, targets, (int)n, K);
    free(probs);
    free(dlosses);
    free(targets);
}

/* per row: dL_r/dz_r */
void ce_backward(const float *z, const int64_t *labels, float *grad, size_t n) {
    backward(z, labels, grad, n, 1.0f);
}

/* the mean over the n rows, as the trainer computes it: dloss = 1/n */
void ce_backward_mean(const float *z, const int64_t *labels, float *grad, size_t n) {
    backward(z, labels, grad, n, 1.0f / (float)n);
}

/* the mean's gradient with the 1/n forgotten */
void ce_backward_mean_unscaled(const float *z, const int64_t *labels, float *grad, size_t n) {
    backward(z, labels, grad, n, 1.0f);
}
