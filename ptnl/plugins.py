"""Plugins: modules that register names into the registries of the layers below them when
imported (losses, noise types, trainers, local CLIP weights, config keys).

The built-in one is the pocket world (``ptnl.pocket`` registers the weights name ``pocket``); the
loader in ``ptnl.clip`` does not know it. This module imports it, and is imported by the layers
that turn a user's MODEL.BACKBONE.NAME into weights (the trainer base, hence ``train.py`` and a
CoOp fork's ``import ptnl.trainers``). ``load_plugins`` imports the user's own: modules or ``.py``
files named in ``PTNL_PLUGINS`` (comma-separated), which ``train.py`` loads before it registers
the trainers and builds the config.
"""
from types import ModuleType
from typing import List, Optional

from ptnl import pocket  # noqa: F401  (registers the "pocket" weights name)
from ptnl.io.plugins import import_plugins


def load_plugins(spec: Optional[str] = None) -> List[ModuleType]:
    """The built-in plugins (imported with this module) and then the user's (``import_plugins``: the
    modules or ``.py`` files of ``spec``, default the PTNL_PLUGINS environment variable); returns the
    user's modules."""
    return import_plugins(spec)
