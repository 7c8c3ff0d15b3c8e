"""The trainers' registry: ``@register_trainer`` on a trainer class (registered under its class
name, the value of ``--trainer`` / TRAINER.NAME), and the config sections a trainer reads, derived
from its class (run identity, ``ptnl.runs.identity``)."""
from typing import List, Type

from ptnl.config import added_defaults
from ptnl.registry import Registry

TRAINER_CLASSES = Registry("trainer", "TRAINER.NAME")


def register_trainer(cls: Type) -> Type:
    """Class decorator: register a trainer under its class name (``--trainer <Name>``)."""
    TRAINER_CLASSES.add(cls.__name__, cls)
    return cls


def available_trainers() -> List[str]:
    return TRAINER_CLASSES.names()


def _sections_named(cls: Type, cfg) -> set:
    names = set()
    for c in cls.__mro__:
        names.add(c.__name__)
        names.update(vars(c).get("CONFIG_SECTIONS", ()))
    names = {n.upper().replace("_", "") for n in names}
    return {s for s in _sections(cfg) if s.upper().replace("_", "") in names}


def _sections(cfg) -> set:
    return {s for s in cfg.TRAINER if hasattr(cfg.TRAINER[s], "keys")}


def _added_sections(cfg) -> set:
    """The sections of ``cfg`` that PTNL or a plugin adds (not Dassl's own trainers')."""
    return {k.split(".")[1] for k in added_defaults() if k.startswith("TRAINER.")} & _sections(cfg)


def config_sections(cls: Type, cfg) -> List[str]:
    """The ``TRAINER.<S>.`` sections of ``cfg`` that trainer ``cls`` reads: the section named as each class
    it derives from (case and "_" aside: ``JoAPR`` and its subclasses read TRAINER.JOAPR, ``LinearProbe``
    TRAINER.LINEAR_PROBE), those its classes list in ``CONFIG_SECTIONS`` (a section named otherwise), and,
    to be safe, every section PTNL or a plugin adds that no registered trainer reads by those rules.
    results.json records them: another trainer's section changes no run of this one (``ptnl.runs.identity``)."""
    read_by_some = set()
    for name in TRAINER_CLASSES:
        read_by_some |= _sections_named(TRAINER_CLASSES[name], cfg)
    own = _sections_named(cls, cfg) | (_added_sections(cfg) - read_by_some)
    return sorted("TRAINER.{}.".format(s) for s in own)
