"""The user's plugins: modules or ``.py`` files named in ``PTNL_PLUGINS`` (comma-separated), imported
so that they register their names (losses, noise types, trainers, datasets, figure kinds, sweep
engines, config keys). Imports nothing but ``errors``, so the commands that run without torch
(``python -m ptnl.sweep``) load them too; a file that imports torch brings it in itself."""
import importlib
import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType
from typing import List, Optional

from ptnl.errors import PluginError


def import_plugins(spec: Optional[str] = None) -> List[ModuleType]:
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
