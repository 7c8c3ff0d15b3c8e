"""PTNL's trainers: the base (``base``: data, step, diagnostics, results; ``evaluation``,
``diagnostics``) and the families (``prompt_tuning``, ``classifiers``, ``baselines``, ``upl``,
``selection``: JoAPR, NLPrompt).

A trainer registers itself with ``@register_trainer``; ``register_trainers()`` puts every
registered trainer into the engine's ``TRAINER_REGISTRY`` (what ``trainers/ptnl.py`` does on
import, and a CoOp fork calls). Importing this package registers nothing in the engine.
"""
import warnings
from typing import List

from ptnl.trainers.base import PTNLTrainerBase  # noqa: F401
from ptnl.trainers.registry import TRAINER_CLASSES, available_trainers, register_trainer  # noqa: F401
from ptnl.trainers.prompt_tuning import PTNL, CLSTuning, FullPromptTuning  # noqa: F401
from ptnl.trainers.classifiers import ClassifierC, ClassifierR, TEncFT, ZeroshotCLIP  # noqa: F401
from ptnl.trainers.baselines import ImageNetFT, LinearProbe  # noqa: F401
from ptnl.trainers.upl import UPL  # noqa: F401
from ptnl.trainers.cocoop import CoCoOp  # noqa: F401
from ptnl.trainers.kgcoop import KgCoOp  # noqa: F401
from ptnl.trainers.maple import MaPLe  # noqa: F401
from ptnl.trainers.promptsrc import PromptSRC  # noqa: F401
from ptnl.trainers.selection import JoAPR, NLPrompt, SampleSelectionTrainer  # noqa: F401


NAMESPACE = "PTNL_"  # prefix of a PTNL trainer whose name a fork already uses


def register_trainers(registry=None) -> List[str]:
    """Register every PTNL trainer in ``registry`` (default: the active engine's
    ``TRAINER_REGISTRY``), for CoOp forks; call it after the fork's own trainers are imported.
    A name the fork already registers keeps the fork's trainer, and PTNL's is registered as
    ``PTNL_<name>`` instead (one warning lists them: CoOp's ``ZeroshotCLIP``, for instance);
    calling it again changes nothing.

    Args:
        registry: a Dassl ``Registry``.

    Returns the names under which PTNL's trainers can be selected (``--trainer``).
    """
    if registry is None:
        from ptnl.compat import TRAINER_REGISTRY as registry
    names, renamed = [], []
    for name in TRAINER_CLASSES:
        cls = TRAINER_CLASSES[name]
        present = registry.registered_names()
        if name in present and registry.get(name) is not cls:
            alias = NAMESPACE + name
            if alias not in present:
                registry._do_register(alias, cls)
            renamed.append(name)
            name = alias
        elif name not in present:
            registry.register(cls)
        names.append(name)
    if renamed:
        warnings.warn("The fork already registers trainer(s) {}: those names keep the fork's trainers, and PTNL's "
                      "are {}".format(", ".join(renamed), ", ".join(NAMESPACE + n for n in renamed)), stacklevel=2)
    return names


