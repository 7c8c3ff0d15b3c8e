"""The module logger of every PTNL module: plain ``message`` lines on the *current* ``sys.stdout``.

Dassl's (and the built-in engine's) ``setup_logger`` replaces ``sys.stdout`` with a tee into
``<output-dir>/log.txt``; resolving the stream at each record keeps PTNL's lines in that file,
exactly as ``print`` wrote them, so CoOp's log parser reads the same lines.
"""
import logging
import sys


class _CurrentStdout(logging.StreamHandler):
    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler sets it; the current sys.stdout always wins
        pass


_ROOT = "ptnl"


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (under the ``ptnl`` logger, which prints plain lines)."""
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(name if name.startswith(_ROOT) else _ROOT + "." + name)


def ago(seconds) -> str:
    """A duration in its largest whole unit, for ages in listings: 45s, 12min, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "{}{}".format(seconds // size, unit)
    return "{}s".format(seconds)
