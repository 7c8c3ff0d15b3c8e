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


def build_loss(name, gce_q=0.7):
    """The loss function for TRAINER.PTNL.LOSS ``name`` with its options bound."""
    if name not in LOSSES:
        raise ValueError("Unknown loss {!r} (TRAINER.PTNL.LOSS): expected one of {}".format(
            name, ", ".join(sorted(LOSSES))))
    fn = LOSSES[name]

    def loss(logits, labels):
        return fn(logits, labels, q=gce_q)
    loss.__name__ = name
    return loss
