"""Classification losses for noisy labels, one registry: ``build_loss(name, **options)``.

Each loss takes logits [B, C] and labels [B] and returns the mean over the batch, computed in
fp32 whatever the logits' precision."""
import torch
import torch.nn.functional as F

LOSSES = {}


def register_loss(name):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


def _true_class_prob(logits, labels):
    return F.softmax(logits.float(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1)


@register_loss("ce")
def cross_entropy(logits, labels, **_):
    """-log p_y."""
    return F.cross_entropy(logits.float(), labels)


@register_loss("gce")
def generalized_cross_entropy(logits, labels, q=0.7, **_):
    """(1 - p_y^q) / q (Zhang & Sabuncu 2018): CE as q -> 0, MAE (1 - p_y) at q = 1; larger q
    bounds the loss of confidently wrong (noisy) samples."""
    if not 0.0 < q <= 1.0:
        raise ValueError("GCE needs 0 < q <= 1 (TRAINER.PTNL.GCE_Q), got {}".format(q))
    p = _true_class_prob(logits, labels).clamp_min(1e-12)
    return ((1.0 - p.pow(q)) / q).mean()


@register_loss("mae")
def mean_absolute_error(logits, labels, **_):
    """1 - p_y: GCE at q = 1 (NLPrompt's MAE); half the L1 distance to the one-hot label."""
    return (1.0 - _true_class_prob(logits, labels)).mean()


RCE_LOG_ZERO = -4.0  # log 0 of the one-hot label, clipped (Wang et al. 2019)


def _reverse_ce(logits, labels):
    """-sum_k p_k log q_k with q the one-hot label and log 0 := -4: equals 4 (1 - p_y)."""
    return -RCE_LOG_ZERO * (1.0 - _true_class_prob(logits, labels))


@register_loss("sce")
def symmetric_cross_entropy(logits, labels, sce_alpha=0.1, sce_beta=1.0, **_):
    """alpha * CE + beta * reverse CE (Wang et al. 2019)."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return (sce_alpha * ce + sce_beta * _reverse_ce(logits, labels)).mean()


@register_loss("nce_rce")
def normalized_ce_plus_rce(logits, labels, nce_alpha=1.0, nce_beta=1.0, **_):
    """alpha * normalised CE + beta * reverse CE (Ma et al. 2020, an "active-passive" loss):
    NCE = -log p_y / -sum_k log p_k is bounded, so noisy samples cannot dominate."""
    logp = F.log_softmax(logits.float(), dim=1)
    nce = logp.gather(1, labels.view(-1, 1)).squeeze(1) / logp.sum(dim=1)
    return (nce_alpha * nce + nce_beta * _reverse_ce(logits, labels)).mean()


def build_loss(name, gce_q=0.7, sce_alpha=0.1, sce_beta=1.0, nce_alpha=1.0, nce_beta=1.0):
    """The loss function for TRAINER.PTNL.LOSS ``name`` with its options bound."""
    if name not in LOSSES:
        raise ValueError("Unknown loss {!r} (TRAINER.PTNL.LOSS): expected one of {}".format(
            name, ", ".join(sorted(LOSSES))))
    if name == "gce" and not 0.0 < gce_q <= 1.0:
        raise ValueError("GCE needs 0 < q <= 1 (TRAINER.PTNL.GCE_Q), got {}".format(gce_q))
    fn = LOSSES[name]
    opts = dict(q=gce_q, sce_alpha=sce_alpha, sce_beta=sce_beta, nce_alpha=nce_alpha, nce_beta=nce_beta)

    def loss(logits, labels):
        return fn(logits, labels, **opts)
    loss.__name__ = name
    return loss


def loss_from_cfg(cfg):
    """``build_loss`` with the options of ``cfg.TRAINER.PTNL``."""
    o = cfg.TRAINER.PTNL
    return build_loss(o.LOSS, gce_q=o.GCE_Q, sce_alpha=o.SCE_ALPHA, sce_beta=o.SCE_BETA,
                      nce_alpha=o.NCE_ALPHA, nce_beta=o.NCE_BETA)
