"""PTNL's trainers: the base (``base``: data, step, diagnostics, results; ``evaluation``,
``diagnostics``) and the families (``prompt_tuning``, ``classifiers``, ``baselines``, ``upl``).

A trainer registers itself with ``@register_trainer``; ``register_trainers()`` puts every
registered trainer into the engine's ``TRAINER_REGISTRY`` (what ``trainers/ptnl.py`` does on
import, and a CoOp fork calls). Importing this package registers nothing in the engine.
"""
import warnings
from typing import Callable, List

from ptnl.trainers.base import PTNLTrainerBase  # noqa: F401
from ptnl.trainers.registry import TRAINER_CLASSES, available_trainers, register_trainer  # noqa: F401
from ptnl.trainers.prompt_tuning import PTNL, CLSTuning, FullPromptTuning  # noqa: F401
from ptnl.trainers.classifiers import ClassifierC, ClassifierR, TEncFT, ZeroshotCLIP  # noqa: F401
from ptnl.trainers.baselines import ImageNetFT, LinearProbe  # noqa: F401
from ptnl.trainers.upl import UPL  # noqa: F401


def register_trainers(registry=None) -> List[str]:
    """Register every PTNL trainer in ``registry`` (default: the active engine's
    ``TRAINER_REGISTRY``); names already present are left alone. For CoOp forks.

    Args:
        registry: a Dassl ``Registry``.

    Returns the names of PTNL's trainers.
    """
    if registry is None:
        from ptnl.compat import TRAINER_REGISTRY as registry
    for name in TRAINER_CLASSES:
        if name not in registry.registered_names():
            registry.register(TRAINER_CLASSES[name])
    return TRAINER_CLASSES.names()


def __getattr__(name: str) -> Callable:
    if name == "TRAINERS":
        warnings.warn("ptnl.trainers.TRAINERS is deprecated and will be removed in the next release; use "
                      "ptnl.trainers.available_trainers() / TRAINER_CLASSES", DeprecationWarning, stacklevel=2)
        return list(TRAINER_CLASSES.values())
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
