"""NLPrompt (Pan et al., CVPR 2025): optimal-transport partition (docs/methods.md;
release: github.com/qunovo/NLPrompt). Each image is transported to the classes under uniform marginals; its pseudo-label is
the class its mass mostly goes to, and the sample is clean when that is its given label."""
import warnings
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ptnl.errors import ConfigError, PTNLError

COSTS = ("p", "logp")  # p: the release's cost (-p up to a row constant); logp: the paper's -log p
SOLVERS = ("sinkhorn", "sinkhorn_log", "auto")


class PlanUnderflow(PTNLError, RuntimeError):
    """The Sinkhorn plan underflowed (rows of zeros or NaN): the regularisation is too small for
    the cost's scale (a user error: the message names the settings that fix it)."""


def ot_cost(logits: torch.Tensor, cost: str = "p") -> np.ndarray:
    """The [N, C] float64 cost from the model's logits. ``p``: the release's -log_softmax(P) with
    P = softmax(logits) (log_softmax applied to probabilities), which is -P plus a per-row constant
    that Sinkhorn's scaling absorbs: a cost of -p. ``logp``: -log P, as the paper writes."""
    if cost not in COSTS:
        raise ConfigError("TRAINER.NLPROMPT.COST must be one of {}, got {!r}".format(COSTS, cost))
    logits = logits.double()
    if cost == "p":
        return (-F.log_softmax(F.softmax(logits, dim=1), dim=1)).cpu().numpy()
    return (-F.log_softmax(logits, dim=1)).cpu().numpy()


def _underflowed(plan: np.ndarray) -> bool:
    return not np.all(np.isfinite(plan)) or bool((plan.sum(axis=1) <= 0).any())


def transport_plan(cost: np.ndarray, reg: float, *, solver: str = "sinkhorn", num_iter: int = 1000,
                   stop_thr: float = 1e-6, allow_underflow: bool = False) -> np.ndarray:
    """POT's entropic OT plan between uniform marginals a = 1/N (images) and b = 1/C (classes).

    Args:
        cost: [N, C] float64.
        reg: entropic regularisation (TRAINER.NLPROMPT.REG).
        solver: ``sinkhorn`` (POT's Sinkhorn-Knopp, the release's), ``sinkhorn_log`` (log domain:
            no underflow), ``auto`` (Sinkhorn-Knopp, log domain when it underflows).
        allow_underflow: return an underflowed plan as it is (the release: all-zero rows, so every
            pseudo-label is class 0) instead of raising ``PlanUnderflow``.
    """
    import ot
    if solver not in SOLVERS:
        raise ConfigError("TRAINER.NLPROMPT.SOLVER must be one of {}, got {!r}".format(SOLVERS, solver))
    n, c = cost.shape
    a, b = np.full(n, 1.0 / n), np.full(c, 1.0 / c)
    method = "sinkhorn_log" if solver == "sinkhorn_log" else "sinkhorn"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns on underflow and non-convergence; we check the plan
        plan = ot.sinkhorn(a, b, cost, reg, method=method, numItermax=num_iter, stopThr=stop_thr)
        if solver == "auto" and _underflowed(plan):
            plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=num_iter, stopThr=stop_thr)
    if _underflowed(plan) and not allow_underflow:
        raise PlanUnderflow(
            "Sinkhorn's transport plan underflowed at TRAINER.NLPROMPT.REG {} (costs in [{:.3g}, {:.3g}]): "
            "exp(-cost/reg) is 0 in float64, so the partition would be meaningless (every pseudo-label class 0). "
            "Raise TRAINER.NLPROMPT.REG (the release's train.py default is 0.01) or set "
            "TRAINER.NLPROMPT.SOLVER sinkhorn_log (log-domain, no underflow) or auto".format(
                reg, float(np.nanmin(cost)), float(np.nanmax(cost))))
    return plan


def ot_partition(plan: np.ndarray, labels: np.ndarray):
    """(pseudo-labels = row-wise argmax of the plan, clean = pseudo-label == given label)."""
    pseudo = np.asarray(plan).argmax(axis=1)
    return pseudo, pseudo == np.asarray(labels)


def release_dropped(n: int, batch_size: int, seed: int) -> np.ndarray:
    """bool [N]: the items the release's pass never sees, the last N mod batch_size of a random
    order (its loader has drop_last); the release puts them in the noisy set."""
    dropped = np.zeros(n, dtype=bool)
    rest = n % batch_size if n >= batch_size else 0
    if rest:
        order = np.random.default_rng(seed).permutation(n)
        dropped[order[n - rest:]] = True
    return dropped


def nlprompt_partition(logits: torch.Tensor, labels: np.ndarray, reg: float, *, cost: str = "p",
                       solver: str = "sinkhorn", num_iter: int = 1000, stop_thr: float = 1e-6,
                       exclude: Optional[np.ndarray] = None, allow_underflow: bool = False):
    """One epoch's partition: (pseudo-labels [N] (-1 where excluded), clean [N] bool). ``exclude``
    (bool [N]): items left out of the transport and put in the noisy set (the release's drop_last)."""
    labels = np.asarray(labels)
    keep = np.ones(len(labels), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    pseudo = np.full(len(labels), -1)
    clean = np.zeros(len(labels), dtype=bool)
    if keep.any():
        plan = transport_plan(ot_cost(logits[torch.as_tensor(keep)], cost), reg, solver=solver, num_iter=num_iter,
                              stop_thr=stop_thr, allow_underflow=allow_underflow)
        pseudo[keep], clean[keep] = ot_partition(plan, labels[keep])
    return pseudo, clean
