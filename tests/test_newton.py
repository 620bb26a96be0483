"""Real use of the second order: multinomial logistic regression on scikit-learn's digits
(K = 10, shipped with scikit-learn: no download) fitted by Newton's method, the Newton steps
solved by conjugate gradients on cross_entropy_hvp, reaches scikit-learn's optimum of the
same objective."""

from __future__ import annotations

import numpy
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

C = 1.0  # scikit-learn's inverse regularisation strength


def newton_cg(kern, X, Y, lam, max_newton=30, tolerance=1e-9):
    """Minimise sum_n L(X_n W + b, Y_n) + lam/2 ||W||^2; returns W, b, gradient norms."""
    W, b = numpy.zeros((X.shape[1], Y.shape[1])), numpy.zeros(Y.shape[1])

    def objective(W, b):
        return kern.cross_entropy(X @ W + b, Y).sum() + lam / 2 * numpy.sum(W * W)

    norms = []
    for _ in range(max_newton):
        z = X @ W + b
        G = kern.cross_entropy_grad(z, Y)
        gW, gb = X.T @ G + lam * W, G.sum(axis=0)
        norm = float(numpy.sqrt(numpy.sum(gW * gW) + numpy.sum(gb * gb)))
        norms.append(norm)
        if norm < tolerance:
            break

        def hessian_times(pW, pb, z=z):
            # the data term's Hessian along the direction: H_n (X_n pW + pb) per sample
            h = kern.cross_entropy_hvp(z, Y, X @ pW + pb)
            return X.T @ h + lam * pW, h.sum(axis=0)

        # conjugate gradients on H p = -g, to a relative residual min(1/2, sqrt|g|)
        xW, xb = numpy.zeros_like(W), numpy.zeros_like(b)
        rW, rb = -gW, -gb
        pW, pb = rW.copy(), rb.copy()
        rr = numpy.sum(rW * rW) + numpy.sum(rb * rb)
        for _ in range(2000):
            if numpy.sqrt(rr) <= min(0.5, numpy.sqrt(norm)) * norm:
                break
            hW, hb = hessian_times(pW, pb)
            step = rr / (numpy.sum(pW * hW) + numpy.sum(pb * hb))
            xW, xb, rW, rb = xW + step * pW, xb + step * pb, rW - step * hW, rb - step * hb
            rr, previous = numpy.sum(rW * rW) + numpy.sum(rb * rb), rr
            pW, pb = rW + rr / previous * pW, rb + rr / previous * pb
        # backtracking (Armijo) from the full Newton step
        t, f0 = 1.0, objective(W, b)
        slope = numpy.sum(gW * xW) + numpy.sum(gb * xb)
        while objective(W + t * xW, b + t * xb) > f0 + 1e-4 * t * slope:
            t /= 2
        W, b = W + t * xW, b + t * xb
    return W, b, norms, objective


def test_newton_with_hessian_vector_products_reaches_scikit_learns_optimum(generated):
    kern = generated(10).c
    X, labels = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16
    Y = numpy.eye(10)[labels]
    # scikit-learn minimises C sum_n loss_n + 1/2 ||W||^2 (the intercept unpenalised): the same
    # minimiser as sum_n loss_n + 1/(2C) ||W||^2
    with threadpool_limits(1):  # many BLAS threads on a shared, loaded machine crawl
        W, b, norms, objective = newton_cg(kern, X, Y, lam=1 / C)
        model = LogisticRegression(C=C, l1_ratio=0.0, tol=1e-10, max_iter=10_000).fit(X, labels)
    assert norms[-1] < 1e-9 and len(norms) <= 25, norms  # Newton's fast final convergence
    assert norms[-2] < 1e-3  # quadratic: the step before was already close
    W_sk, b_sk = model.coef_.T, model.intercept_
    ours, theirs = objective(W, b), objective(W_sk, b_sk)
    # the same optimum: scikit-learn's point is no better, and within its own tolerance
    assert ours <= theirs and (theirs - ours) / ours < 1e-9, (ours, theirs)
    assert numpy.max(numpy.abs(W - W_sk)) < 1e-4 * numpy.max(numpy.abs(W))
    # the intercepts are determined up to a common shift (softmax is shift invariant)
    assert numpy.max(numpy.abs((b - b.mean()) - (b_sk - b_sk.mean()))) < 1e-3
    numpy.testing.assert_array_equal(numpy.argmax(X @ W + b, axis=1), model.predict(X))
