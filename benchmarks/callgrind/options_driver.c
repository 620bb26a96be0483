/* Callgrind driver for benchmarks/callgrind/options.sh: the fused loss and gradient with
 * options of softmax_k{KK}.c (included as SOURCE; TYPE double or float, SFX f64 or f32) on n
 * rows, with class weights, ignore_index on 1 row in 16, label smoothing 0.1, temperature 2
 * and z-loss 1e-4 (bench_options.py's). argv: case (none: fill the arrays only, which the
 * script subtracts; index_mean: integer labels, MEAN; soft_sum: probability targets, SUM),
 * rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include SOURCE
#define XNAME(name, k, sfx) name##_k##k##_##sfx
#define NAME(name, k, sfx) XNAME(name, k, sfx)
#define XOPTIONS(k, sfx) softmax_k##k##_options_##sfx
#define OPTIONS(k, sfx) XOPTIONS(k, sfx)

int main(int argc, char **argv)
{
    if (argc < 3) {
        return 2;
    }
    const size_t n = (size_t)atol(argv[2]);
    TYPE *z = malloc(n * K * sizeof *z), *y = malloc(n * K * sizeof *y);
    TYPE *grad = malloc(n * K * sizeof *grad), w[K], loss[1] = {0};
    int64_t *labels = malloc(n * sizeof *labels);
    srand(1);
    for (size_t i = 0; i < n * K; ++i) {
        z[i] = (TYPE)((rand() / (double)RAND_MAX) * 6 - 3);
        y[i] = (TYPE)1 / K;
    }
    for (size_t r = 0; r < n; ++r) {
        labels[r] = r % 16 == 0 ? -100 : (int64_t)(rand() % K);
    }
    for (size_t i = 0; i < K; ++i) {
        w[i] = (TYPE)(0.5 + (double)(i % 3));
    }
    OPTIONS(KK, SFX) o = {w, -100, 1, 2, (TYPE)0.1, (TYPE)2, (TYPE)1e-4};
    if (strcmp(argv[1], "index_mean") == 0) {
        NAME(cross_entropy_with_grad_index_opt, KK, SFX)(z, labels, loss, grad, n, &o);
    } else if (strcmp(argv[1], "soft_sum") == 0) {
        o.reduction = 1;
        NAME(cross_entropy_with_grad_opt, KK, SFX)(z, y, loss, grad, n, &o);
    }
    printf("%g\n", (double)loss[0]);
    return 0;
}
