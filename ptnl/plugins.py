"""Plugins: modules that register names into the registries of the layers below them when
imported (losses, noise types, trainers, local CLIP weights, config keys).

The built-in one is the pocket world (``ptnl.pocket`` registers the weights name ``pocket``); the
loader in ``ptnl.clip`` does not know it. This module imports it, and is imported by the layers
that turn a user's MODEL.BACKBONE.NAME into weights (the trainer base, hence ``train.py`` and a
CoOp fork's ``import ptnl.trainers``). ``load_plugins`` imports the user's own: modules or ``.py``
files named in ``PTNL_PLUGINS`` (comma-separated), which ``train.py`` loads before it registers
the trainers and builds the config.
"""
import importlib
import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType
from typing import List, Optional

from ptnl import pocket  # noqa: F401  (registers the "pocket" weights name)
from ptnl.errors import PluginError


def load_plugins(spec: Optional[str] = None) -> List[ModuleType]:
    """Import the plugins named in ``spec`` (default: the PTNL_PLUGINS environment variable).

    Args:
        spec: comma-separated module names (``my_pkg.my_loss``) or paths of ``.py`` files.

    Returns the imported modules.
    """
    spec = os.environ.get("PTNL_PLUGINS", "") if spec is None else spec
    modules = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.endswith(".py") or os.sep in item:
            path = osp.abspath(osp.expanduser(item))
            if not osp.isfile(path):
                raise PluginError('Plugin file "{}" (PTNL_PLUGINS={}) not found: name an existing .py file or an '
                                  'importable module'.format(path, spec))
            name = "ptnl_plugin_" + osp.splitext(osp.basename(path))[0]
            if name not in sys.modules:
                module_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
            modules.append(sys.modules[name])
        else:
            try:
                modules.append(importlib.import_module(item))
            except ModuleNotFoundError as e:
                if e.name is None or not (item == e.name or item.startswith(e.name + ".")):
                    raise  # the plugin itself imports something missing: its traceback says what
                raise PluginError("Plugin module {!r} (PTNL_PLUGINS={}) not found: name an importable module or "
                                  "a .py file".format(item, spec)) from None
    return modules
