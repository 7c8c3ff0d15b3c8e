"""JoAPR (Guo et al., CVPR 2024): joint adaptive partitioning and label refinement, step by step
(docs/methods.md; release: github.com/yunncheng/JoAPR). ``release=True`` reproduces the released code where
it differs: variances in place of standard deviations (and a stray factor 2) in the Gaussian
intersection, the eval-pass probabilities in sampler order when weighting, N = classes x shots."""
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

# sklearn GaussianMixture settings of the release (DivideMix's)
GMM_OPTIONS = {"n_components": 2, "max_iter": 10, "tol": 1e-2, "reg_covar": 5e-4}


def confidence_penalty(logits: torch.Tensor) -> torch.Tensor:
    """mean_i sum_c p log p (negative entropy): added to CE in warm-up, it penalises confident
    predictions so that noisy samples are not memorised before the first partition."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (logp.exp() * logp).sum(dim=1).mean()


def selection_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample CE(y) + entropy(p): the quantity the GMM separates (clean samples: low)."""
    logp = F.log_softmax(logits.float(), dim=1)
    ce = -logp.gather(1, labels.view(-1, 1)).squeeze(1)
    return ce - (logp.exp() * logp).sum(dim=1)


def minmax(v: np.ndarray) -> np.ndarray:
    """(v - min) / (max - min): losses of different epochs on one scale before averaging."""
    v = np.asarray(v, dtype=np.float64)
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def averaged_loss(history: List[np.ndarray], window: int = 5) -> np.ndarray:
    """Mean of the last ``window`` normalised loss vectors: smooths the per-epoch noise of the
    loss before the GMM (AVERAGE_LOSS)."""
    return np.mean(np.stack(history[-window:]), axis=0)


def fit_gmm(loss: np.ndarray, seed: Optional[int] = None):
    """Two-component 1-D GMM on the per-sample loss: (posterior of the low-mean component
    [N], (mean, variance) of the clean component, (mean, variance) of the noisy one)."""
    from sklearn.mixture import GaussianMixture
    x = np.asarray(loss, dtype=np.float64).reshape(-1, 1)
    gmm = GaussianMixture(random_state=seed, **GMM_OPTIONS).fit(x)
    means, variances = gmm.means_.ravel(), gmm.covariances_.ravel()
    c, n = int(means.argmin()), int(means.argmax())
    prob = gmm.predict_proba(x)[:, c]
    return prob, (float(means[c]), float(variances[c])), (float(means[n]), float(variances[n]))


def gaussian_intersection(mu_c: float, var_c: float, mu_n: float, var_n: float, release: bool = False) -> float:
    """Threshold 1: the loss where the clean and the noisy Gaussian densities are equal, the root of
    (s_n^2 - s_c^2) x^2 + 2 (mu_n s_c^2 - mu_c s_n^2) x + mu_c^2 s_n^2 - mu_n^2 s_c^2
    + 2 s_c^2 s_n^2 ln(s_c / s_n) = 0 taken by (-B + sqrt(B^2 - 4AC)) / 2A (the one between the
    means). ``release``: the released formula, with variances as s and ln(2 s_c / s_n + 1e-8);
    NaN (no sample passes) when its discriminant is negative."""
    if release:
        v_c, v_n = var_c, var_n
        a = v_n ** 2 - v_c ** 2
        b = 2 * (mu_n * v_c ** 2 - mu_c * v_n ** 2)
        c = (mu_c * v_n) ** 2 - (mu_n * v_c) ** 2 + 2 * (v_n * v_c) ** 2 * np.log(2 * v_c / v_n + 1e-8)
        with np.errstate(invalid="ignore"):
            return float((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a + 1e-10))
    s_c2, s_n2 = var_c, var_n
    a = s_n2 - s_c2
    b = 2 * (mu_n * s_c2 - mu_c * s_n2)
    c = mu_c ** 2 * s_n2 - mu_n ** 2 * s_c2 + s_c2 * s_n2 * np.log(s_c2 / s_n2)  # 2 s^2 s^2 ln(s_c/s_n)
    if abs(a) < 1e-12 * max(s_c2, s_n2):  # equal spreads: the midpoint of the means
        return float(-c / b) if b != 0 else float("nan")
    with np.errstate(invalid="ignore"):
        return float((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a))


def adaptive_threshold(p_clean: np.ndarray, thres: float, n: int):
    """Threshold 2: r = (n - #{p_c > thres}) / n, the estimated noise rate; returns (r, p_c > r).
    The caller carries r over as the next epoch's ``thres`` (it starts at 0.5)."""
    r = (n - int((np.asarray(p_clean) > thres).sum())) / n
    return r, np.asarray(p_clean) > r


def sample_weights(p_clean: np.ndarray, p_given: Optional[np.ndarray], order: Optional[np.ndarray] = None):
    """Label-refinement weight w of each sample: p_c (first main epoch: ``p_given`` None), else
    p_c x p(given label) of the same sample. ``order`` (release): the eval pass's sampler order,
    so sample i gets the probability of sample order[i] (the released bug)."""
    p_clean = np.asarray(p_clean, dtype=np.float64)
    if p_given is None:
        return p_clean
    p_given = np.asarray(p_given, dtype=np.float64)
    return p_clean * (p_given[order] if order is not None else p_given)


def partition(loss: np.ndarray, p_given: Optional[np.ndarray], thres: float, n: int, first: bool,
              seed: Optional[int] = None, release: bool = False, order: Optional[np.ndarray] = None) -> Dict:
    """One epoch's partition from the (averaged, normalised) per-sample loss: GMM, both thresholds,
    clean = (loss < tau) or (p_c > r), weights. Returns clean [N] bool, weights [N], p_clean, tau,
    thres (the new carried value) and the GMM components."""
    p_c, (mu_c, var_c), (mu_n, var_n) = fit_gmm(loss, seed)
    tau = gaussian_intersection(mu_c, var_c, mu_n, var_n, release=release)
    with np.errstate(invalid="ignore"):
        pred1 = np.asarray(loss) < tau  # NaN: all False
    r, pred2 = adaptive_threshold(p_c, thres, n)
    w = sample_weights(p_c, None if first else p_given, order if release else None)
    return {"clean": pred1 | pred2, "weights": w, "p_clean": p_c, "tau": tau, "thres": r,
            "gmm": {"clean": [mu_c, var_c], "noisy": [mu_n, var_n]}}


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^T renormalised (Dassl's sharpen_prob): T > 1 makes soft targets more confident."""
    p = p.pow(temperature)
    return p / p.sum(dim=1, keepdim=True)


def refined_targets(w: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label refinement of clean-set samples: sharpen(w onehot(y) + (1 - w) p)."""
    onehot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    w = w.view(-1, 1).to(probs.dtype)
    return sharpen(w * onehot + (1 - w) * probs, temperature)


def mixup_lambda(rng: np.random.Generator, beta: float) -> float:
    """lambda ~ Beta(beta, beta), folded to max(lambda, 1 - lambda) so each mixed sample stays
    closest to its own image."""
    lam = float(rng.beta(beta, beta))
    return max(lam, 1.0 - lam)


def mixup(x: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor):
    """(lam x + (1 - lam) x[perm], lam t + (1 - lam) t[perm])."""
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-mean_i sum_c t_ic log softmax(logits)_ic."""
    return -(targets.float() * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || mean prediction): keeps the batch's predictions spread over the classes
    (no collapse onto a few under soft self-targets)."""
    mean_p = F.softmax(logits.float(), dim=1).mean(dim=0)
    prior = torch.full_like(mean_p, 1.0 / mean_p.numel())
    return (prior * torch.log(prior / mean_p)).sum()
