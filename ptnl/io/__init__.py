"""Files: PTNL's cache folder, atomic writes, and the module logger. Imports nothing of ``ptnl``."""
import json
import os
import os.path as osp
import tempfile
from typing import IO, Any, Callable

from ptnl.io.log import get_logger  # noqa: F401


def user_cache_dir() -> str:
    """PTNL's own cache folder (feature caches, caches for read-only data folders)."""
    return os.environ.get("PTNL_CACHE_DIR") or osp.join(
        os.environ.get("XDG_CACHE_HOME") or osp.expanduser("~/.cache"), "ptnl")


def process_umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux's
    ``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write_fn: Callable[[IO], Any], mode: str = "w", *, public: bool = True) -> None:
    """Write through a temporary file in the same folder and rename: readers never see a
    partial file. The file gets the permissions ``open()`` would give it (``0o666`` less the
    umask: 0644 under umask 022, 0664 under 002), not the temporary file's private 0600.

    Args:
        path: the file to write.
        write_fn: called with the open temporary file.
        mode: ``"w"`` (text) or ``"wb"``.
        public: False keeps the file private to its owner (0600).
    """
    os.makedirs(osp.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path) or ".", prefix=".tmp-")
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
        if public:
            os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """JSON written via a temporary file and a rename: a reader sees all of it or nothing."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=False))
