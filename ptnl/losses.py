"""Classification losses for noisy labels, one registry: ``build_loss(name, **options)``.

Each loss takes logits [B, C] and labels [B] and returns the mean over the batch (or, with
``reduction="none"``, one value per sample), computed in fp32 whatever the logits' precision.

A new loss is one function in one file; its options are declared once, on the decorator::

    @register_loss("my_loss", options={"t": LossOption("MY_LOSS_T", "temperature of my loss", above(0))})
    def my_loss(logits, labels, t=1.0, reduction="mean", **_):
        ...

Each option is a config key under ``TRAINER.PTNL`` (its default: the keyword's default; a comment;
optionally a value rule, ``ptnl.rules``); ``ptnl.config.extend_cfg`` adds the keys of every registered
loss, checks their values with the other keys', and ``build_loss`` / ``loss_from_cfg`` pass them by
their lower-case key name. This module imports torch only where a loss is computed: the config and the
grid scripts (``python -m ptnl.sweep``) read the options without it.
"""
import functools
import inspect
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Set, Union

from ptnl.errors import ConfigError
from ptnl.registry import Registry
from ptnl.rules import ANY, Rule, at_least, broken, is_number, rule

if TYPE_CHECKING:  # pragma: no cover
    import torch

LOSSES = Registry("loss", "TRAINER.PTNL.LOSS", sort_names=True, error=ConfigError,
                  hint="a loss of your own: @register_loss in a file named by PTNL_PLUGINS=path/to/file.py "
                       "(CONTRIBUTING.md, Loss)")
SECTION = "TRAINER.PTNL"  # where the options' keys live


class LossOption(NamedTuple):
    """One option of a loss: its config key under TRAINER.PTNL, a one-line comment, the values it takes
    (a ``ptnl.rules`` rule; None: any value of the default's type). Its default is the keyword's."""
    key: str
    help: str = ""
    rule: Optional[Rule] = ANY

    def check(self, value) -> None:
        """ConfigError naming the key when ``value`` breaks the rule."""
        message = broken("{}.{}".format(SECTION, self.key), self.rule, value)
        if message:
            raise ConfigError(message)


def register_loss(name: str, *, options: Optional[Dict[str, Union[str, LossOption]]] = None,
                  check: Optional[Callable] = None) -> Callable:
    """Decorator: register ``fn(logits, labels, **options, reduction="mean")`` as loss ``name``.

    Args:
        name: the value of TRAINER.PTNL.LOSS that selects it.
        options: keyword of ``fn`` -> its ``LossOption`` (or just its config key under TRAINER.PTNL); the
            key is added to the config with the keyword's default.
        check: called with every option (keyword -> value) when the loss is built, after each option's
            rule; raises ConfigError on a bad combination.
    """
    def wrap(fn):
        declared = {kw: LossOption(o) if isinstance(o, str) else o for kw, o in (options or {}).items()}
        defaults = _defaults(fn)
        missing = ["{} ({}.{})".format(kw, SECTION, o.key) for kw, o in declared.items() if kw not in defaults]
        if missing:
            raise TypeError("loss {!r}: option {} needs a keyword default in {}() (the key's default)".format(
                name, ", ".join(missing), fn.__name__))
        LOSSES.add(name, fn, options=declared, check=check)
        return fn
    return wrap


def available_losses() -> List[str]:
    return LOSSES.names()


@functools.lru_cache(maxsize=None)
def _defaults(fn):
    """{keyword: default} of a loss function's signature (asked once per run and per loss)."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def declared_options() -> Dict[str, Dict]:
    """{CFG_KEY: {"default", "help", "rule"}} of every option of the registered losses (built-in and
    plugins'), in registration order; an option several losses share (RCE_A) once."""
    out = {}
    for name in LOSSES:
        defaults = _defaults(LOSSES[name])
        for kw, opt in LOSSES.meta(name)["options"].items():
            out.setdefault(opt.key, {"default": defaults[kw], "help": opt.help, "rule": opt.rule})
    return out


def add_option_keys(cfg) -> None:
    """Add every registered loss's options under ``cfg.TRAINER.PTNL`` with their defaults, where missing
    (``ptnl.config.extend_cfg`` calls it)."""
    node = cfg.TRAINER.PTNL
    for key, opt in declared_options().items():
        if key not in node:
            node[key] = opt["default"]


def option_keys() -> Set[str]:
    """The full config keys of the registered losses' options ("TRAINER.PTNL.GCE_Q", ...)."""
    return {"{}.{}".format(SECTION, key) for key in declared_options()}


def option_rules() -> Dict[str, Rule]:
    """{full config key: its rule} of the registered losses' options, for ``ptnl.config.check_values``."""
    return {"{}.{}".format(SECTION, key): opt["rule"] for key, opt in declared_options().items()}


def _reduce(per_sample, reduction):
    return per_sample.mean() if reduction == "mean" else per_sample


def _ce(logits, labels, reduction):
    from torch.nn import functional as F  # here, not at the top: the config imports this module without torch
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


def _true_class_prob(logits, labels):
    return logits.float().softmax(dim=1).gather(1, labels.view(-1, 1)).squeeze(1)


@register_loss("ce")
def cross_entropy(logits, labels, reduction="mean", **_):
    """-log p_y."""
    return _ce(logits, labels, reduction)


GCE_Q = LossOption("GCE_Q", "q of the generalised cross-entropy", rule(lambda v: is_number(v) and 0 < v <= 1,
                                                                       "a number in (0, 1]"))


@register_loss("gce", options={"q": GCE_Q})
def generalized_cross_entropy(logits, labels, q=0.7, reduction="mean", **_):
    """(1 - p_y^q) / q (Zhang & Sabuncu 2018): CE as q -> 0, MAE (1 - p_y) at q = 1; larger q
    bounds the loss of confidently wrong (noisy) samples."""
    GCE_Q.check(q)
    p = _true_class_prob(logits, labels).clamp_min(1e-12)
    return _reduce((1.0 - p.pow(q)) / q, reduction)


@register_loss("mae")
def mean_absolute_error(logits, labels, reduction="mean", **_):
    """1 - p_y: GCE at q = 1 (NLPrompt's MAE); half the L1 distance to the one-hot label."""
    return _reduce(1.0 - _true_class_prob(logits, labels), reduction)


RCE_LOG_ZERO = -4.0  # A: log 0 of the one-hot label, clipped (Wang et al. 2019); the release clamps at 1e-4
RCE_A = LossOption("RCE_A", "sce, nce_rce: log 0 := A in reverse CE (SCE paper; the release: log 1e-4)",
                   rule(lambda v: is_number(v) and v < 0, "a number < 0 (log 0 := A)"))


def _reverse_ce(logits, labels, rce_a):
    """-sum_k p_k log q_k with q the one-hot label and log 0 := A: equals -A (1 - p_y). A = -4 is
    the SCE paper's; the paper's released loss clamps q at 1e-4, i.e. A = log 1e-4 (about -9.21)."""
    return -rce_a * (1.0 - _true_class_prob(logits, labels))


@register_loss("sce", options={"sce_alpha": LossOption("SCE_ALPHA", "sce: weight of CE", at_least(0)),
                               "sce_beta": LossOption("SCE_BETA", "sce: weight of reverse CE", at_least(0)),
                               "rce_a": RCE_A})
def symmetric_cross_entropy(logits, labels, sce_alpha=0.1, sce_beta=1.0, rce_a=RCE_LOG_ZERO, reduction="mean",
                            **_):
    """alpha * CE + beta * reverse CE (Wang et al. 2019)."""
    ce = _ce(logits, labels, "none")
    return _reduce(sce_alpha * ce + sce_beta * _reverse_ce(logits, labels, rce_a), reduction)


@register_loss("nce_rce", options={"nce_alpha": LossOption("NCE_ALPHA", "nce_rce: weight of normalised CE",
                                                           at_least(0)),
                                   "nce_beta": LossOption("NCE_BETA", "nce_rce: weight of reverse CE", at_least(0)),
                                   "rce_a": RCE_A})
def normalized_ce_plus_rce(logits, labels, nce_alpha=1.0, nce_beta=1.0, rce_a=RCE_LOG_ZERO, reduction="mean", **_):
    """alpha * normalised CE + beta * reverse CE (Ma et al. 2020, an "active-passive" loss):
    NCE = -log p_y / -sum_k log p_k is bounded, so noisy samples cannot dominate."""
    logp = logits.float().log_softmax(dim=1)
    nce = logp.gather(1, labels.view(-1, 1)).squeeze(1) / logp.sum(dim=1)
    return _reduce(nce_alpha * nce + nce_beta * _reverse_ce(logits, labels, rce_a), reduction)


class Loss:
    """A registered loss with its options bound: ``loss(logits, labels)`` is the batch mean,
    ``loss.per_sample(logits, labels)`` one value per sample."""

    def __init__(self, name: str, fn: Callable, options: Dict):
        self.__name__, self.fn, self.options = name, fn, options

    def __call__(self, logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        return self.fn(logits, labels, **self.options)

    def per_sample(self, logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        return self.fn(logits, labels, reduction="none", **self.options)

    def __repr__(self):
        return "Loss({}, {})".format(self.__name__, self.options)


def build_loss(name: str, **options) -> Loss:
    """The loss function for TRAINER.PTNL.LOSS ``name`` with its options bound; each option's rule
    (and the loss's ``check``) is applied to the values it will train with.

    Args:
        name: a registered loss (``available_losses()``).
        **options: options by their lower-case config key (``gce_q=0.5``); those of other
            losses are ignored, so one call may pass every option.
    """
    fn = LOSSES.lookup(name)
    meta = LOSSES.meta(name)
    known = {key.lower() for key in declared_options()}
    stray = sorted(set(options) - known)
    if stray:
        raise TypeError("build_loss() got unknown option(s) {}; known: {}".format(
            ", ".join(stray), ", ".join(sorted(known))))
    bound = {kw: options[o.key.lower()] for kw, o in meta["options"].items() if o.key.lower() in options}
    defaults = _defaults(fn)
    effective = {kw: bound.get(kw, defaults[kw]) for kw in meta["options"]}
    for kw, opt in meta["options"].items():
        opt.check(effective[kw])
    if meta["check"] is not None:
        meta["check"](**effective)
    return Loss(name, fn, bound)


def loss_options(cfg) -> Dict[str, Dict]:
    """{CFG_KEY: {"value", "default"}} of every option of TRAINER.PTNL.LOSS: what results.json records
    so that tables and legends can show each non-default one, whatever the loss."""
    o = cfg.TRAINER.PTNL
    if o.LOSS not in LOSSES:
        return {}
    defaults = _defaults(LOSSES[o.LOSS])
    return {opt.key: {"value": o[opt.key], "default": defaults[kw]}
            for kw, opt in LOSSES.meta(o.LOSS)["options"].items()}


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
    return build_loss(o.LOSS, **{opt.key.lower(): o[opt.key] for opt in meta["options"].values()})
