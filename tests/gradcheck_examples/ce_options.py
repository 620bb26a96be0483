"""Cross-entropy gradients with F.cross_entropy's options (weight, ignore_index, reduction,
label_smoothing) plus temperature and z-loss, right and with the usual mistakes.

`grad` takes the options as keywords (the Python API binds them with functools.partial); the
functions below it fix them, as a training script does, for `symsoft check` on the command
line."""

import numpy as np

W = np.array([1.0, 2.0, 0.5, 0.0, 1.5])  # class weights (K = 5), a zero among them
TRAIN = {"weight": W, "ignore_index": -100, "label_smoothing": 0.1, "temperature": 2.0}


def grad(
    z,
    target,
    *,
    weight=None,
    ignore_index=None,
    reduction="none",
    label_smoothing=0.0,
    temperature=1.0,
    z_loss=0.0,
    bug=None,
):
    """dL/dz of F.cross_entropy(z / T, target, weight, ignore_index, reduction,
    label_smoothing) + z_loss * lse(z/T)^2 per non-ignored row; target integer classes or
    probabilities; one row (K,) or a batch (N, K). bug: one of the usual mistakes."""
    one = np.ndim(z) == 1
    zz = np.atleast_2d(z)
    n, k = zz.shape
    eps, lam = label_smoothing, z_loss
    u = zz / temperature
    m = np.max(u, axis=-1, keepdims=True)
    e = np.exp(u - m)
    total = np.sum(e, axis=-1, keepdims=True)
    s, lse = e / total, (m + np.log(total))[:, 0]
    w = np.ones(k) if weight is None else np.asarray(weight, dtype=np.float64)
    if np.issubdtype(np.asarray(target).dtype, np.integer):
        t = np.atleast_1d(target)
        keep = np.ones(n, dtype=bool) if ignore_index is None else t != ignore_index
        safe = np.where(keep, t, 0)
        a = np.zeros((n, k))
        a[np.arange(n), safe] = (1 - eps) * w[safe]
        a += eps / k * w
        if bug != "smoothing_on_ignored":
            a[~keep] = 0.0
        else:
            a[~keep] = eps / k * w
        norm = np.sum(w[safe] * keep)
        if bug == "weights_of_ignored" and ignore_index is not None and 0 <= ignore_index < k:
            norm = np.sum(w[np.atleast_1d(target)])
    else:
        yy = np.atleast_2d(target)
        keep = np.ones(n, dtype=bool)
        a = w * ((1 - eps) * yy + eps / k)
        norm = n
    two = 1.0 if bug == "z_loss_no_2" else 2.0
    g = s * (np.sum(a, axis=-1) + two * lam * lse * keep)[:, None] - a
    if bug != "no_inverse_t":
        g = g / temperature
    if reduction == "mean":
        g = g / (n if bug == "mean_by_n" else norm) if norm > 0 else g * 0.0
    g = g.astype(np.result_type(z))
    return g[0] if one else g


def train_grad(z, c):
    """Integer labels, the batch mean, with TRAIN's options."""
    return grad(z, c, reduction="mean", **TRAIN)


def train_grad_mean_by_n(z, c):
    """Wrong: mean divides by N, not by the sum of the weights of the non-ignored rows."""
    return grad(z, c, reduction="mean", bug="mean_by_n", **TRAIN)


def train_grad_smoothing_on_ignored(z, c):
    """Wrong: the smoothing term is added to ignored rows too (pytorch#73205's mistake)."""
    return grad(z, c, reduction="mean", bug="smoothing_on_ignored", **TRAIN)


def train_grad_no_inverse_t(z, c):
    """Wrong: the 1/T of d(z/T)/dz forgotten."""
    return grad(z, c, reduction="mean", bug="no_inverse_t", **TRAIN)


def zloss_grad(z, y):
    """Probability targets, per row, z-loss 1e-3 (PaLM's is 1e-4)."""
    return grad(z, y, z_loss=1e-3)


def zloss_grad_no_2(z, y):
    """Wrong: the z-loss gradient lambda lse s where 2 lambda lse s is right."""
    return grad(z, y, z_loss=1e-3, bug="z_loss_no_2")


def class0_ignored_grad(z, c):
    """Class 0 is padding: ignore_index 0, weights W, the batch mean."""
    return grad(z, c, reduction="mean", weight=W, ignore_index=0)


def class0_ignored_grad_counts_ignored(z, c):
    """Wrong: the mean's normaliser includes the weights of the ignored (class 0) rows."""
    return grad(z, c, reduction="mean", weight=W, ignore_index=0, bug="weights_of_ignored")


def train_grad_nan_when_all_ignored(z, c):
    """Wrong on a batch whose rows are all ignored: divides 0 by 0 (PyTorch's gradient is 0)."""
    g = grad(z, c, **TRAIN)
    keep = np.atleast_1d(c) != TRAIN["ignore_index"]
    return g / np.sum(W[np.where(keep, c, 0)] * keep)
