/* Wall-clock timer for benchmarks/storage/time.sh: three kernels of softmax_k{KK}.c (included as
 * SOURCE) in float32 and on bf16 storage, called in turn, best of argv[2] calls each on
 * argv[1] values (the bf16 inputs are the float inputs' high halves). Prints ns per value. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include SOURCE
#define XNAME(name, k, sfx) name##_k##k##_##sfx
#define NAME(name, k, sfx) XNAME(name, k, sfx)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        return 2;
    }
    const size_t n = (size_t)atol(argv[1]) / K;
    const int repeats = atoi(argv[2]);
    float *z = malloc(n * K * 4), *y = malloc(n * K * 4), *g = malloc(n * K * 4), *l = malloc(n * 4);
    uint16_t *zh = malloc(n * K * 2), *yh = malloc(n * K * 2), *gh = malloc(n * K * 2);
    uint16_t *lh = malloc(n * 2);
    int64_t *labels = malloc(n * 8);
    srand(1);
    for (size_t i = 0; i < n * K; ++i) {
        uint32_t u;
        z[i] = (float)(rand() / (double)RAND_MAX * 6 - 3);
        y[i] = (float)(rand() / (double)RAND_MAX / K);
        memcpy(&u, &z[i], sizeof u);
        zh[i] = (uint16_t)(u >> 16);
        memcpy(&u, &y[i], sizeof u);
        yh[i] = (uint16_t)(u >> 16);
    }
    for (size_t i = 0; i < n; ++i) {
        labels[i] = rand() % K;
    }
    double best[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < repeats; ++r) {
        double t[7];
        t[0] = now();
        NAME(softmax, KK, f32)(z, g, n);
        t[1] = now();
        NAME(softmax, KK, bf16)(zh, gh, n);
        t[2] = now();
        NAME(cross_entropy_with_grad, KK, f32)(z, y, l, g, n);
        t[3] = now();
        NAME(cross_entropy_with_grad, KK, bf16)(zh, yh, lh, gh, n);
        t[4] = now();
        NAME(cross_entropy_with_grad_index, KK, f32)(z, labels, l, g, n);
        t[5] = now();
        NAME(cross_entropy_with_grad_index, KK, bf16)(zh, labels, lh, gh, n);
        t[6] = now();
        for (int j = 0; j < 6; ++j) {
            best[j] = t[j + 1] - t[j] < best[j] ? t[j + 1] - t[j] : best[j];
        }
    }
    const double per = 1e9 / (double)(n * K);
    printf("| %d | %zu | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f |\n", K, n * K,
           best[0] * per, best[1] * per, best[1] / best[0], best[2] * per, best[3] * per,
           best[3] / best[2], best[4] * per, best[5] * per, best[5] / best[4]);
    return 0;
}
