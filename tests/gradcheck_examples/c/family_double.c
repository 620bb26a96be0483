/* double kernels in symsoft check's convention for the later members: log-sum-exp's
   gradient, distillation's gradient (T fixed at compile time), cross-entropy's Hessian. */
#include <math.h>
#include <stddef.h>

#ifndef K
#define K 4
#endif
#ifndef TEMPERATURE
#define TEMPERATURE 2.0
#endif

static void softmax_row(const double *z, double scale, double *s) {
    double m = -INFINITY, sum = 0.0;
    for (int i = 0; i < K; i++) m = z[i] * scale > m ? z[i] * scale : m;
    for (int i = 0; i < K; i++) sum += s[i] = exp(z[i] * scale - m);
    for (int i = 0; i < K; i++) s[i] /= sum;
}

/* void fn(const double *z, double *grad, size_t n): d logsumexp / dz = softmax(z) */
void logsumexp_grad(const double *z, double *grad, size_t n) {
    for (size_t r = 0; r < n; r++) softmax_row(z + r * K, 1.0, grad + r * K);
}

/* void fn(const double *zs, const double *zt, double *grad, size_t n): T (p_s - p_t) */
void distillation_grad(const double *zs, const double *zt, double *grad, size_t n) {
    double ps[K], pt[K];
    for (size_t r = 0; r < n; r++) {
        softmax_row(zs + r * K, 1.0 / TEMPERATURE, ps);
        softmax_row(zt + r * K, 1.0 / TEMPERATURE, pt);
        for (int i = 0; i < K; i++) grad[r * K + i] = TEMPERATURE * (ps[i] - pt[i]);
    }
}

/* void fn(const double *z, const double *y, double *hess, size_t n):
   sum(y) (diag(s) - s s^T), row-major K x K per row */
void cross_entropy_hessian(const double *z, const double *y, double *hess, size_t n) {
    double s[K];
    for (size_t r = 0; r < n; r++) {
        double total = 0.0;
        softmax_row(z + r * K, 1.0, s);
        for (int i = 0; i < K; i++) total += y[r * K + i];
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                hess[(r * K + i) * K + j] = total * ((i == j) * s[i] - s[i] * s[j]);
    }
}
