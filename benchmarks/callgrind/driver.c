/* Callgrind driver for benchmarks/callgrind/fused.sh and storage.sh: one kernel of
 * softmax_k{KK}.c (included as SOURCE) on n rows. argv: kernel (grad, with_grad, grad_index,
 * with_grad_index, softmax, none), dtype (f32, f64, bf16: the float values' high halves),
 * rows. "none" fills the arrays only: the scripts subtract its count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include SOURCE
#define XNAME(name, k, sfx) name##_k##k##_##sfx
#define NAME(name, k, sfx) XNAME(name, k, sfx)

int main(int argc, char **argv)
{
    if (argc < 4) {
        return 2;
    }
    const char *kernel = argv[1];
    const int dbl = strcmp(argv[2], "f64") == 0, half = strcmp(argv[2], "bf16") == 0;
    const size_t n = (size_t)atol(argv[3]);
    double *zd = malloc(n * K * 8), *yd = malloc(n * K * 8), *gd = malloc(n * K * 8);
    double *ld = malloc(n * 8);
    float *zf = malloc(n * K * 4), *yf = malloc(n * K * 4), *gf = malloc(n * K * 4);
    float *lf = malloc(n * 4);
    uint16_t *zh = malloc(n * K * 2), *yh = malloc(n * K * 2), *gh = malloc(n * K * 2);
    uint16_t *lh = malloc(n * 2);
    int64_t *labels = malloc(n * 8);
    srand(1);
    for (size_t i = 0; i < n * K; ++i) {
        zd[i] = (rand() / (double)RAND_MAX) * 6 - 3;
        zf[i] = (float)zd[i];
        yd[i] = rand() / (double)RAND_MAX / K;
        yf[i] = (float)yd[i];
        uint32_t u;
        memcpy(&u, &zf[i], sizeof u);
        zh[i] = (uint16_t)(u >> 16);
        memcpy(&u, &yf[i], sizeof u);
        yh[i] = (uint16_t)(u >> 16);
    }
    for (size_t i = 0; i < n; ++i) {
        labels[i] = rand() % K;
    }
    if (half) {
        if (!strcmp(kernel, "grad")) NAME(cross_entropy_grad, KK, bf16)(zh, yh, gh, n);
        if (!strcmp(kernel, "with_grad")) NAME(cross_entropy_with_grad, KK, bf16)(zh, yh, lh, gh, n);
        if (!strcmp(kernel, "grad_index")) NAME(cross_entropy_grad_index, KK, bf16)(zh, labels, gh, n);
        if (!strcmp(kernel, "with_grad_index")) {
            NAME(cross_entropy_with_grad_index, KK, bf16)(zh, labels, lh, gh, n);
        }
        if (!strcmp(kernel, "softmax")) NAME(softmax, KK, bf16)(zh, gh, n);
        printf("%d\n", gh[0]);
        return 0;
    }
    if (!strcmp(kernel, "softmax")) {
        if (dbl) NAME(softmax, KK, f64)(zd, gd, n);
        else NAME(softmax, KK, f32)(zf, gf, n);
    } else if (!strcmp(kernel, "grad")) {
        if (dbl) NAME(cross_entropy_grad, KK, f64)(zd, yd, gd, n);
        else NAME(cross_entropy_grad, KK, f32)(zf, yf, gf, n);
    } else if (!strcmp(kernel, "with_grad")) {
        if (dbl) NAME(cross_entropy_with_grad, KK, f64)(zd, yd, ld, gd, n);
        else NAME(cross_entropy_with_grad, KK, f32)(zf, yf, lf, gf, n);
    } else if (!strcmp(kernel, "grad_index")) {
        if (dbl) NAME(cross_entropy_grad_index, KK, f64)(zd, labels, gd, n);
        else NAME(cross_entropy_grad_index, KK, f32)(zf, labels, gf, n);
    } else if (!strcmp(kernel, "with_grad_index")) {
        if (dbl) NAME(cross_entropy_with_grad_index, KK, f64)(zd, labels, ld, gd, n);
        else NAME(cross_entropy_with_grad_index, KK, f32)(zf, labels, lf, gf, n);
    }
    printf("%g\n", dbl ? gd[0] : (double)gf[0]);  /* the results are used */
    return 0;
}
