"""The WAE objective's terms, the VAE's negative ELBO and the pretraining loss.

Written with `keras.ops` only, so each runs unchanged on the TensorFlow and JAX
backends. Shapes: images (B, H, W, C); codes (B, d_z); logits (B, 1). Every loss
returns a scalar.

WAE objective [paper, Eq. 4]:  E c(X, G(Z~)) + lambda * D_Z(Q_Z, P_Z).
"""

from __future__ import annotations

import math

from keras import ops

# IMQ kernel bandwidth multipliers [code] wae.py mmd_penalty.
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
# Probabilities are clipped like Keras's own cross-entropy before taking logs.
_EPSILON = 1e-7


def reconstruction_cost(x, y, scale: float = 0.05):
    """c(x, y) = scale * ||x - y||^2 per image, averaged over the batch.

    The default 0.05 is the official code's l2sq constant: it only rescales lambda and
    the learning rate, and is kept so that the paper's lambdas mean what they mean there.
    """
    per_image = ops.sum(ops.square(x - y), axis=tuple(range(1, len(x.shape))))
    return scale * ops.mean(per_image)


def _squared_distances(a, b):
    """||a_i - b_j||^2 via norms and dot products, exactly as the official code."""
    norms_a = ops.sum(ops.square(a), axis=1, keepdims=True)
    norms_b = ops.sum(ops.square(b), axis=1, keepdims=True)
    return norms_a + ops.transpose(norms_b) - 2.0 * ops.matmul(a, ops.transpose(b))


def mmd_penalty(qz, pz, kernel: str = "imq", pz_scale: float = 1.0):
    """Unbiased estimate of MMD^2(Q_Z, P_Z) from n encoded codes and n prior draws.

    [paper, Algorithm 2; code wae.py mmd_penalty]. For each kernel k:
        (sum_{i!=j} k(qz_i, qz_j) + sum_{i!=j} k(pz_i, pz_j)) / (n^2 - n)
        - 2 sum_{i,j} k(qz_i, pz_j) / n^2
    kernel="imq": k(x, y) = C / (C + ||x - y||^2), summed over C = s * 2 d_z sigma_z^2
    for s in IMQ_SCALES (sigma_z = pz_scale). kernel="rbf": exp(-||x - y||^2 / (2 s2)),
    one bandwidth s2 from the code's median heuristic. Can be slightly negative.
    """
    n = ops.shape(qz)[0]
    nf = ops.cast(n, qz.dtype)
    off_diagonal = 1.0 - ops.eye(n, dtype=qz.dtype)
    d_qq = _squared_distances(qz, qz)
    d_pp = _squared_distances(pz, pz)
    d_qp = _squared_distances(qz, pz)

    def estimate(k_qq, k_pp, k_qp):
        within = ops.sum((k_qq + k_pp) * off_diagonal) / (nf * nf - nf)
        return within - 2.0 * ops.sum(k_qp) / (nf * nf)

    if kernel == "imq":
        base = 2.0 * qz.shape[-1] * pz_scale**2
        total = 0.0
        for s in IMQ_SCALES:
            c = base * s
            total = total + estimate(c / (c + d_qq), c / (c + d_pp), c / (c + d_qp))
        return total
    if kernel == "rbf":
        # [code] median heuristic: the (n^2 - n)/2-th largest entry of the Q-P distance
        # matrix plus the same of the Q-Q matrix.
        half = (qz.shape[0] * qz.shape[0] - qz.shape[0]) // 2
        s2 = _kth_largest(d_qp, half) + _kth_largest(d_qq, half)
        return estimate(
            ops.exp(-d_qq / (2.0 * s2)), ops.exp(-d_pp / (2.0 * s2)), ops.exp(-d_qp / (2.0 * s2))
        )
    raise ValueError(f"unknown MMD kernel {kernel!r}; use 'imq' or 'rbf'")


def _kth_largest(matrix, k: int):
    values, _ = ops.top_k(ops.reshape(matrix, (-1,)), k)
    return values[k - 1]


def _sigmoid_cross_entropy(logits, labels: float):
    """Mean of -[y log sigmoid(l) + (1 - y) log(1 - sigmoid(l))], computed stably."""
    return ops.mean(ops.softplus(logits) - labels * logits)


def log_normal_density(z, pz_scale: float, constant: str = "exact"):
    """log N(z; 0, sigma_z^2 I) per row, shape (B, 1): the AVB log-prior trick's term.

    constant="official_code" uses the code's normalisation, -1/2 log(2 pi) - d/2 log(sigma_z^2)
    [code z_adversary], instead of the exact -d/2 log(2 pi sigma_z^2).
    """
    d = z.shape[-1]
    sq_norm = ops.sum(ops.square(z), axis=-1, keepdims=True)
    if constant == "exact":
        offset = -0.5 * d * math.log(2.0 * math.pi * pz_scale**2)
    elif constant == "official_code":
        offset = -0.5 * math.log(2.0 * math.pi) - 0.5 * d * math.log(pz_scale**2)
    else:
        raise ValueError(f"unknown log-prior constant {constant!r}")
    return -sq_norm / (2.0 * pz_scale**2) + offset


def adversary_loss(logits_prior, logits_encoded, penalty_weight: float):
    """The latent adversary's loss [paper, Algorithm 1; code gan_penalty].

    lambda * (BCE(D(z), 1) + BCE(D(z~), 0)): minimising it ascends
    lambda/n sum [log D(z_i) + log(1 - D(z~_i))].
    """
    return penalty_weight * (
        _sigmoid_cross_entropy(logits_prior, 1.0) + _sigmoid_cross_entropy(logits_encoded, 0.0)
    )


def gan_penalty(logits_encoded):
    """The encoder's non-saturating GAN term, -log D(z~), batch mean [code loss_Qz_trick]."""
    return _sigmoid_cross_entropy(logits_encoded, 1.0)


def gaussian_kl(mean, log_variance, pz_scale: float = 1.0):
    """KL(N(mean, diag exp(log_variance)) || N(0, sigma_z^2 I)) per image, batch mean."""
    prior_var = pz_scale**2
    kl = 0.5 * ops.sum(
        (ops.exp(log_variance) + ops.square(mean)) / prior_var
        - 1.0
        - log_variance
        + math.log(prior_var),
        axis=-1,
    )
    return ops.mean(kl)


def bernoulli_nll(x, probabilities):
    """-log p(x | z) for a Bernoulli decoder (MNIST), summed over pixels, batch mean.

    x and probabilities in [0, 1]; probabilities are clipped to [1e-7, 1 - 1e-7].
    """
    p = ops.clip(probabilities, _EPSILON, 1.0 - _EPSILON)
    per_pixel = -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))
    return ops.mean(ops.sum(per_pixel, axis=tuple(range(1, len(x.shape)))))


def gaussian_nll(x, mean, variance: float):
    """-log N(x; mean, variance I) for a fixed-variance Gaussian decoder, batch mean."""
    axes = tuple(range(1, len(x.shape)))
    num_pixels = math.prod(x.shape[1:])
    sq = ops.sum(ops.square(x - mean), axis=axes)
    return ops.mean(sq / (2.0 * variance)) + 0.5 * num_pixels * math.log(2.0 * math.pi * variance)


def moment_matching_loss(qz, pz):
    """Encoder pretraining loss [code pretrain_loss]: match Q_Z's mean and covariance to P_Z's.

    mean((mean(qz) - mean(pz))^2) + mean((cov(qz) - cov(pz))^2), unbiased covariances.
    """
    n = ops.cast(ops.shape(qz)[0], qz.dtype)
    mean_q = ops.mean(qz, axis=0, keepdims=True)
    mean_p = ops.mean(pz, axis=0, keepdims=True)
    cq, cp = qz - mean_q, pz - mean_p
    cov_q = ops.matmul(ops.transpose(cq), cq) / (n - 1.0)
    cov_p = ops.matmul(ops.transpose(cp), cp) / (n - 1.0)
    return ops.mean(ops.square(mean_q - mean_p)) + ops.mean(ops.square(cov_q - cov_p))
