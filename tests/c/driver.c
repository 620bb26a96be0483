/* Test driver for the emitted kernels: reads rows from stdin, runs every kernel in float and
 * double, prints the results. Compiled by tests/test_sanitizers.py with -DSYMSOFT_K=<K> and
 * -include softmax_k<K>.h, under AddressSanitizer and UndefinedBehaviorSanitizer.
 *
 * stdin: n, then n*K logits, n*K targets, n labels (whitespace separated; "inf", "nan" ok).
 * The targets double as the vector v of the Jacobian-vector products and as the teacher's
 * logits of distillation (at T = 2 for the loss, T = 0.5 for the gradient).
 * stdout: one line per kernel and dtype: "<name>_<sfx>" followed by every output value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define PASTE(name, k, sfx) name##_k##k##_##sfx
#define KERNEL(name, k, sfx) PASTE(name, k, sfx)
#define PASTE_OPTIONS(k, sfx) softmax_k##k##_options_##sfx
#define OPTIONS(k, sfx) PASTE_OPTIONS(k, sfx)

static double *read_doubles(size_t count)
{
    double *values = malloc((count ? count : 1) * sizeof *values);
    for (size_t i = 0; values && i < count; ++i) {
        if (scanf("%lf", &values[i]) != 1) {
            exit(3);
        }
    }
    return values;
}

static void print_doubles(const char *name, const double *values, size_t count)
{
    printf("%s", name);
    for (size_t i = 0; i < count; ++i) {
        printf(" %.17g", values[i]);
    }
    printf("\n");
}

static void print_floats(const char *name, const float *values, size_t count)
{
    printf("%s", name);
    for (size_t i = 0; i < count; ++i) {
        printf(" %.9g", (double)values[i]);
    }
    printf("\n");
}

#define RUN(T, sfx, print, z, y, labels, n)                                              \
    do {                                                                                   \
        const size_t k = SYMSOFT_K;                                                        \
        T *out = malloc((n * k * k + n + 1) * sizeof(T));                                  \
        KERNEL(softmax, SYMSOFT_K, sfx)(z, out, n);                                        \
        print("softmax_" #sfx, out, n * k);                                                \
        KERNEL(log_softmax, SYMSOFT_K, sfx)(z, out, n);                                    \
        print("log_softmax_" #sfx, out, n * k);                                            \
        KERNEL(softmax_jacobian, SYMSOFT_K, sfx)(z, out, n);                               \
        print("softmax_jacobian_" #sfx, out, n * k * k);                                   \
        KERNEL(cross_entropy, SYMSOFT_K, sfx)(z, y, out, n);                               \
        print("cross_entropy_" #sfx, out, n);                                              \
        KERNEL(cross_entropy_grad, SYMSOFT_K, sfx)(z, y, out, n);                          \
        print("cross_entropy_grad_" #sfx, out, n * k);                                     \
        KERNEL(cross_entropy_index, SYMSOFT_K, sfx)(z, labels, out, n);                    \
        print("cross_entropy_index_" #sfx, out, n);                                        \
        KERNEL(cross_entropy_grad_index, SYMSOFT_K, sfx)(z, labels, out, n);               \
        print("cross_entropy_grad_index_" #sfx, out, n * k);                               \
        KERNEL(cross_entropy_with_grad, SYMSOFT_K, sfx)(z, y, out + n * k, out, n);        \
        print("cross_entropy_with_grad_" #sfx, out, n * k + n);                            \
        /* the options path (issue 17): weights, ignore_index = K (the label K is ignored,  \
         * -1 stays a NaN row), smoothing, temperature and z-loss; per row, then mean */    \
        T weight[SYMSOFT_K];                                                               \
        for (size_t i = 0; i < k; ++i) {                                                   \
            weight[i] = (T)(0.5 + (double)(i % 3));                                        \
        }                                                                                  \
        OPTIONS(SYMSOFT_K, sfx) options = {weight, SYMSOFT_K, 1, 0, (T)0.1, (T)0.7, (T)0.01}; \
        KERNEL(cross_entropy_with_grad_index_opt, SYMSOFT_K, sfx)(z, labels, out + n * k, out, \
                                                                 n, &options);             \
        print("options_index_" #sfx, out, n * k + n);                                      \
        options.reduction = 2;                                                             \
        KERNEL(cross_entropy_with_grad_opt, SYMSOFT_K, sfx)(z, y, out + n * k, out, n, &options); \
        print("options_mean_" #sfx, out, n * k + 1);                                       \
        KERNEL(softmax_jvp, SYMSOFT_K, sfx)(z, y, out, n);                                 \
        print("softmax_jvp_" #sfx, out, n * k);                                            \
        KERNEL(softmax_vjp, SYMSOFT_K, sfx)(z, y, out, n);                                 \
        print("softmax_vjp_" #sfx, out, n * k);                                            \
        KERNEL(cross_entropy_with_grad_index, SYMSOFT_K, sfx)(z, labels, out + n * k, out, n); \
        print("cross_entropy_with_grad_index_" #sfx, out, n * k + n);                      \
        KERNEL(logsumexp, SYMSOFT_K, sfx)(z, out, n);                                      \
        print("logsumexp_" #sfx, out, n);                                                  \
        KERNEL(log_softmax_jvp, SYMSOFT_K, sfx)(z, y, out, n);                             \
        print("log_softmax_jvp_" #sfx, out, n * k);                                        \
        KERNEL(log_softmax_vjp, SYMSOFT_K, sfx)(z, y, out, n);                             \
        print("log_softmax_vjp_" #sfx, out, n * k);                                        \
        KERNEL(cross_entropy_hessian, SYMSOFT_K, sfx)(z, y, out, n);                       \
        print("cross_entropy_hessian_" #sfx, out, n * k * k);                              \
        KERNEL(cross_entropy_hvp, SYMSOFT_K, sfx)(z, y, y, out, n);                        \
        print("cross_entropy_hvp_" #sfx, out, n * k);                                      \
        KERNEL(distillation_kl, SYMSOFT_K, sfx)(z, y, (T)2, out, n);                       \
        print("distillation_kl_" #sfx, out, n);                                            \
        KERNEL(distillation_kl_grad, SYMSOFT_K, sfx)(z, y, (T)0.5, out, n);                \
        print("distillation_kl_grad_" #sfx, out, n * k);                                   \
        free(out);                                                                         \
    } while (0)

int main(void)
{
    size_t n;
    if (scanf("%zu", &n) != 1) {
        return 3;
    }
    const size_t count = n * SYMSOFT_K;
    double *z = read_doubles(count);
    double *y = read_doubles(count);
    double *label_values = read_doubles(n);
    int64_t *labels = malloc((n ? n : 1) * sizeof *labels);
    float *zf = malloc((count ? count : 1) * sizeof *zf);
    float *yf = malloc((count ? count : 1) * sizeof *yf);
    if (!z || !y || !label_values || !labels || !zf || !yf) {
        return 4;
    }
    for (size_t i = 0; i < n; ++i) {
        labels[i] = (int64_t)label_values[i];
    }
    for (size_t i = 0; i < count; ++i) {
        zf[i] = (float)z[i];
        yf[i] = (float)y[i];
    }
    RUN(double, f64, print_doubles, z, y, labels, n);
    RUN(float, f32, print_floats, zf, yf, labels, n);
    free(z);
    free(y);
    free(label_values);
    free(labels);
    free(zf);
    free(yf);
    return 0;
}
