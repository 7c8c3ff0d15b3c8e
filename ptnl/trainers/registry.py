"""The trainers' registry: ``@register_trainer`` on a trainer class (registered under its class
name, the value of ``--trainer`` / TRAINER.NAME)."""
from typing import List, Type

from ptnl.registry import Registry

TRAINER_CLASSES = Registry("trainer", "TRAINER.NAME")


def register_trainer(cls: Type) -> Type:
    """Class decorator: register a trainer under its class name (``--trainer <Name>``)."""
    TRAINER_CLASSES.add(cls.__name__, cls)
    return cls


def available_trainers() -> List[str]:
    return TRAINER_CLASSES.names()
