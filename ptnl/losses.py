"""Classification losses for noisy labels, one registry: ``build_loss(name, **options)``.

Each loss takes logits [B, C] and labels [B] and returns the mean over the batch (or, with
``reduction="none"``, one value per sample), computed in fp32 whatever the logits' precision.

A new loss is one function in one file::

    @register_loss("my_loss", options={"t": "MY_LOSS_T"})  # keyword t <- TRAINER.PTNL.MY_LOSS_T
    def my_loss(logits, labels, t=1.0, reduction="mean", **_):
        ...

Its options get config keys under ``TRAINER.PTNL`` (default: the keyword's default) and
``build_loss`` / ``loss_from_cfg`` pass them by their lower-case key name.
"""
import inspect
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from ptnl.config import register_config_keys
from ptnl.errors import ConfigError
from ptnl.registry import Registry

LOSSES = Registry("loss", "TRAINER.PTNL.LOSS", sort_names=True, error=ConfigError,
                  hint="a loss of your own: @register_loss in a file named by PTNL_PLUGINS=path/to/file.py "
                       "(CONTRIBUTING.md, Loss)")


def register_loss(name: str, *, options: Optional[Dict[str, str]] = None,
                  check: Optional[Callable] = None) -> Callable:
    """Decorator: register ``fn(logits, labels, **options, reduction="mean")`` as loss ``name``.

    Args:
        name: the value of TRAINER.PTNL.LOSS that selects it.
        options: keyword of ``fn`` -> its config key under TRAINER.PTNL (added with the keyword's
            default when missing).
        check: called with the bound options when the loss is built; raises on a bad value.
    """
    def wrap(fn):
        LOSSES.add(name, fn, options=dict(options or {}), check=check)
        return fn
    return wrap


def available_losses() -> List[str]:
    return LOSSES.names()


@register_config_keys
def _loss_option_keys(cfg):
    for name in LOSSES:
        defaults = _defaults(LOSSES[name])
        for kw, key in LOSSES.meta(name)["options"].items():
            if key not in cfg.TRAINER.PTNL:
                cfg.TRAINER.PTNL[key] = defaults[kw]


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _reduce(per_sample, reduction):
    return per_sample.mean() if reduction == "mean" else per_sample


def _true_class_prob(logits, labels):
    return F.softmax(logits.float(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1)


@register_loss("ce")
def cross_entropy(logits, labels, reduction="mean", **_):
    """-log p_y."""
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


def check_gce_q(q):
    if not 0.0 < q <= 1.0:
        raise ConfigError("GCE needs 0 < q <= 1 (TRAINER.PTNL.GCE_Q), got {}".format(q))


@register_loss("gce", options={"q": "GCE_Q"}, check=check_gce_q)
def generalized_cross_entropy(logits, labels, q=0.7, reduction="mean", **_):
    """(1 - p_y^q) / q (Zhang & Sabuncu 2018): CE as q -> 0, MAE (1 - p_y) at q = 1; larger q
    bounds the loss of confidently wrong (noisy) samples."""
    check_gce_q(q)
    p = _true_class_prob(logits, labels).clamp_min(1e-12)
    return _reduce((1.0 - p.pow(q)) / q, reduction)


@register_loss("mae")
def mean_absolute_error(logits, labels, reduction="mean", **_):
    """1 - p_y: GCE at q = 1 (NLPrompt's MAE); half the L1 distance to the one-hot label."""
    return _reduce(1.0 - _true_class_prob(logits, labels), reduction)


RCE_LOG_ZERO = -4.0  # A: log 0 of the one-hot label, clipped (Wang et al. 2019); the release clamps at 1e-4


def check_rce_a(**options):
    a = options["rce_a"]
    if not a < 0:
        raise ConfigError("Reverse CE needs log 0 := A < 0 (TRAINER.PTNL.RCE_A), got {}".format(a))


def _reverse_ce(logits, labels, rce_a):
    """-sum_k p_k log q_k with q the one-hot label and log 0 := A: equals -A (1 - p_y). A = -4 is
    the SCE paper's; the paper's released loss clamps q at 1e-4, i.e. A = log 1e-4 (about -9.21)."""
    return -rce_a * (1.0 - _true_class_prob(logits, labels))


@register_loss("sce", options={"sce_alpha": "SCE_ALPHA", "sce_beta": "SCE_BETA", "rce_a": "RCE_A"},
               check=check_rce_a)
def symmetric_cross_entropy(logits, labels, sce_alpha=0.1, sce_beta=1.0, rce_a=RCE_LOG_ZERO, reduction="mean",
                            **_):
    """alpha * CE + beta * reverse CE (Wang et al. 2019)."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return _reduce(sce_alpha * ce + sce_beta * _reverse_ce(logits, labels, rce_a), reduction)


@register_loss("nce_rce", options={"nce_alpha": "NCE_ALPHA", "nce_beta": "NCE_BETA", "rce_a": "RCE_A"},
               check=check_rce_a)
def normalized_ce_plus_rce(logits, labels, nce_alpha=1.0, nce_beta=1.0, rce_a=RCE_LOG_ZERO, reduction="mean", **_):
    """alpha * normalised CE + beta * reverse CE (Ma et al. 2020, an "active-passive" loss):
    NCE = -log p_y / -sum_k log p_k is bounded, so noisy samples cannot dominate."""
    logp = F.log_softmax(logits.float(), dim=1)
    nce = logp.gather(1, labels.view(-1, 1)).squeeze(1) / logp.sum(dim=1)
    return _reduce(nce_alpha * nce + nce_beta * _reverse_ce(logits, labels, rce_a), reduction)


class Loss:
    """A registered loss with its options bound: ``loss(logits, labels)`` is the batch mean,
    ``loss.per_sample(logits, labels)`` one value per sample."""

    def __init__(self, name: str, fn: Callable, options: Dict):
        self.__name__, self.fn, self.options = name, fn, options

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, labels, **self.options)

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, labels, reduction="none", **self.options)

    def __repr__(self):
        return "Loss({}, {})".format(self.__name__, self.options)


def build_loss(name: str, **options) -> Loss:
    """The loss function for TRAINER.PTNL.LOSS ``name`` with its options bound.

    Args:
        name: a registered loss (``available_losses()``).
        **options: options by their lower-case config key (``gce_q=0.5``); those of other
            losses are ignored, so one call may pass every option.
    """
    fn = LOSSES.lookup(name)
    meta = LOSSES.meta(name)
    known = {key.lower() for n in LOSSES for key in LOSSES.meta(n)["options"].values()}
    stray = sorted(set(options) - known)
    if stray:
        raise TypeError("build_loss() got unknown option(s) {}; known: {}".format(
            ", ".join(stray), ", ".join(sorted(known))))
    bound = {kw: options[key.lower()] for kw, key in meta["options"].items() if key.lower() in options}
    if meta["check"] is not None:
        defaults = _defaults(fn)
        meta["check"](**{kw: bound.get(kw, defaults[kw]) for kw in meta["options"]})
    return Loss(name, fn, bound)


def loss_options(cfg) -> Dict[str, Dict]:
    """{CFG_KEY: {"value", "default"}} of every option of TRAINER.PTNL.LOSS: what results.json records
    so that tables and legends can show each non-default one, whatever the loss."""
    o = cfg.TRAINER.PTNL
    if o.LOSS not in LOSSES:
        return {}
    defaults = _defaults(LOSSES[o.LOSS])
    return {key: {"value": o[key], "default": defaults[kw]} for kw, key in LOSSES.meta(o.LOSS)["options"].items()}


def loss_line(cfg) -> str:
    """TRAINER.PTNL.LOSS with every option of it as the run sets it, as the log states it:
    ``gce (GCE_Q=0.7)``."""
    opts = loss_options(cfg)
    return cfg.TRAINER.PTNL.LOSS + (" ({})".format(", ".join("{}={}".format(k, o["value"]) for k, o in opts.items()))
                                    if opts else "")


def loss_from_cfg(cfg) -> Loss:
    """``build_loss`` for TRAINER.PTNL.LOSS with the options of ``cfg.TRAINER.PTNL``."""
    o = cfg.TRAINER.PTNL
    meta = LOSSES.meta(o.LOSS)
    return build_loss(o.LOSS, **{key.lower(): o[key] for key in meta["options"].values()})
