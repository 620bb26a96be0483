/* double kernels in symsoft check's convention: Jacobians and VJPs of softmax / log-softmax. */
#include <math.h>
#include <stddef.h>

#ifndef K
#define K 4
#endif

static void softmax_row(const double *z, double *s) {
    double m = -INFINITY, sum = 0.0;
    for (int i = 0; i < K; i++) m = z[i] > m ? z[i] : m;
    for (int i = 0; i < K; i++) sum += s[i] = exp(z[i] - m);
    for (int i = 0; i < K; i++) s[i] /= sum;
}

/* void fn(const double *z, double *jac, size_t n): d log s_i / d z_j = delta_ij - s_j */
void log_softmax_jacobian(const double *z, double *jac, size_t n) {
    double s[K];
    for (size_t r = 0; r < n; r++) {
        softmax_row(z + r * K, s);
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) jac[(r * K + i) * K + j] = (i == j) - s[j];
    }
}

/* void fn(const double *z, const double *g, double *out, size_t n): g^T J of softmax */
void softmax_vjp(const double *z, const double *g, double *out, size_t n) {
    double s[K];
    for (size_t r = 0; r < n; r++) {
        softmax_row(z + r * K, s);
        double dot = 0.0;
        for (int i = 0; i < K; i++) dot += g[r * K + i] * s[i];
        for (int j = 0; j < K; j++) out[r * K + j] = s[j] * (g[r * K + j] - dot);
    }
}

/* log-softmax's VJP written as J g (the Jacobian applied from the wrong side) */
void log_softmax_vjp_as_jvp(const double *z, const double *g, double *out, size_t n) {
    double s[K];
    for (size_t r = 0; r < n; r++) {
        softmax_row(z + r * K, s);
        double dot = 0.0;
        for (int i = 0; i < K; i++) dot += g[r * K + i] * s[i];
        for (int j = 0; j < K; j++) out[r * K + j] = g[r * K + j] - dot;
    }
}

/* cross-entropy with probability targets that writes through a null pointer on masked rows */
void ce_grad_crashes_on_masks(const double *z, const double *y, double *grad, size_t n) {
    double s[K];
    for (size_t r = 0; r < n; r++) {
        double total = 0.0;
        for (int i = 0; i < K; i++) {
            if (isinf(z[r * K + i])) *(volatile double *)0 = 1.0;
            total += y[r * K + i];
        }
        softmax_row(z + r * K, s);
        for (int i = 0; i < K; i++) grad[r * K + i] = s[i] * total - y[r * K + i];
    }
}
