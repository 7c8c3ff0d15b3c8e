"""The one user-error base class: ``PTNLError`` is what the user can fix (a setting, a path, a
name); ``train.py`` and the command-line tools print it as one ``Error:`` line. Any other exception
is a bug and keeps its traceback. Imports nothing, so every layer may raise these.

Subclasses also inherit the built-in class callers catch (``ValueError``, ``FileNotFoundError``,
``ImportError``, ``RuntimeError``), so ``except ValueError`` around a config check keeps working.
"""


class PTNLError(Exception):
    """An error the user fixes by changing the command, a setting or a file: one line, no traceback."""


class ConfigError(PTNLError, ValueError):
    """A config value, flag or command line that cannot run (unknown key or name, bad value, conflict)."""


class MissingFileError(PTNLError, FileNotFoundError):
    """A file or folder the user named (or that a setting implies) is missing or of the wrong kind."""


class EngineError(PTNLError, ImportError):
    """The engine PTNL_ENGINE names cannot be imported (``PTNL_ENGINE=dassl`` without Dassl)."""


class PluginError(PTNLError, ImportError):
    """A module or file named in PTNL_PLUGINS cannot be found."""


class RunError(PTNLError, RuntimeError):
    """A run that cannot go on because of a setting's consequence the user can change."""
