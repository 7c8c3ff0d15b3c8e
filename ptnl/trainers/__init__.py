"""PTNL's trainer classes (not registered on import; see ``register_trainers``)."""
from .baselines import ImageNetFT, LinearProbe
from .clip_heads import ClassifierC, ClassifierR, TEncFT, ZeroshotCLIP
from .prompt_tuning import PTNL, CLSTuning, FullPromptTuning
from .upl import UPL

TRAINERS = [PTNL, FullPromptTuning, CLSTuning, ClassifierR, ClassifierC, TEncFT, ZeroshotCLIP,
            LinearProbe, ImageNetFT, UPL]


def register_trainers(registry=None):
    """Register every PTNL trainer in ``registry`` (default: the active engine's
    ``TRAINER_REGISTRY``); names already present are left alone. For CoOp forks."""
    if registry is None:
        from ptnl.compat import TRAINER_REGISTRY as registry
    for cls in TRAINERS:
        if cls.__name__ not in registry.registered_names():
            registry.register(cls)
    return [cls.__name__ for cls in TRAINERS]
