"""The later members' derivatives, right and with the usual mistakes (symsoft check --of
logsumexp | log_softmax --form vjp | distillation_kl | cross_entropy_hessian)."""

import numpy as np

T = 2.0  # the distillation functions' temperature: check them with --temperature 2


def softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def lse_grad(z):
    """d logsumexp / dz = softmax(z), stable."""
    return softmax(z)


def lse_grad_unstable(z):
    """exp(z) / sum(exp(z)) without the max shift: overflows for z > ~709."""
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def lse_and_grad(z):
    """(logsumexp, its gradient)."""
    m = np.max(z, axis=-1, keepdims=True)
    total = np.sum(np.exp(z - m), axis=-1, keepdims=True)
    return (m + np.log(total))[..., 0], np.exp(z - m) / total


def log_softmax_backward(z, g):
    """Log-softmax's backward pass: g - s * sum(g)."""
    return g - softmax(z) * np.sum(g, axis=-1, keepdims=True)


def log_softmax_backward_elementwise(z, g):
    """Wrong: s * g where s * sum(g) is needed."""
    return g - softmax(z) * g


def log_softmax_backward_no_sum(z, g):
    """Wrong: sum(g) left out."""
    return g - softmax(z)


def distill_grad(zs, zt):
    """d/dz_s of T^2 KL(softmax(zt/T) || softmax(zs/T)) per row: T (p_s - p_t)."""
    return T * (softmax(zs / T) - softmax(zt / T))


def distill_batchmean(zs, zt):
    """(loss, grad) as F.kl_div(log_softmax(zs/T), log_softmax(zt/T), log_target=True,
    reduction="batchmean") * T**2."""
    n = zs.shape[0]
    ls = zs / T - np.max(zs / T, axis=-1, keepdims=True)
    ls = ls - np.log(np.sum(np.exp(ls), axis=-1, keepdims=True))
    lt = zt / T - np.max(zt / T, axis=-1, keepdims=True)
    lt = lt - np.log(np.sum(np.exp(lt), axis=-1, keepdims=True))
    pt = np.exp(lt)
    terms = np.where(pt > 0, pt * (lt - np.where(pt > 0, ls, 0)), 0.0)
    return T * T * np.sum(terms) / n, T * (np.exp(ls) - pt) / n


def distill_no_t2(zs, zt):
    """Wrong: the loss's T^2 forgotten: (p_s - p_t) / T."""
    return (softmax(zs / T) - softmax(zt / T)) / T


def distill_no_chain(zs, zt):
    """Wrong: the 1/T of d(z/T)/dz forgotten: T^2 (p_s - p_t)."""
    return T * T * (softmax(zs / T) - softmax(zt / T))


def distill_swapped(zs, zt):
    """Wrong: student and teacher swapped."""
    return T * (softmax(zt / T) - softmax(zs / T))


def ce_hessian(z, y):
    """sum(y) (diag(s) - s s^T), one row or a batch."""
    s = softmax(z)
    eye = np.eye(z.shape[-1], dtype=z.dtype)
    total = np.sum(y, axis=-1)[..., None, None]
    return total * (s[..., :, None] * eye - s[..., :, None] * s[..., None, :])


def ce_hessian_no_sum(z, y):
    """Wrong for any sum(y): the softmax Jacobian, without sum(y)."""
    s = softmax(z)
    return s[..., :, None] * np.eye(z.shape[-1], dtype=z.dtype) - s[..., :, None] * s[..., None, :]


def ce_hessian_diagonal(z, y):
    """Wrong: sum(y) diag(s), the -s s^T term missing."""
    s = softmax(z)
    return np.sum(y, axis=-1)[..., None, None] * (s[..., :, None] * np.eye(z.shape[-1]))
