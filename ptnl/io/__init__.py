"""Files: PTNL's cache folder, atomic writes, and the module logger. Imports nothing of ``ptnl``."""
import errno
import io
import json
import os
import os.path as osp
import tempfile
from typing import IO, Any, Callable, List, Optional

from ptnl.errors import PTNLError
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


class DiskFullError(PTNLError, OSError):
    """A write that failed for lack of space (ENOSPC, or EDQUOT: over quota); the message names the
    file, the bytes it needed and the bytes free there. The previous file, if any, is intact."""

    def __init__(self, path: str, needed: Optional[int], free: Optional[int], reason: str):
        super().__init__(errno.ENOSPC, reason, path)
        self.path, self.needed, self.free = path, needed, free

    def __str__(self):
        need = "{} bytes ({})".format(self.needed, _human(self.needed)) if self.needed is not None else "an unknown size"
        free = "; {} free there".format(_human(self.free)) if self.free is not None else ""
        return ('No space to write "{}" ({}): it needs {}{}. The previous file is intact; free some space '
                "and re-run the same command.".format(self.path, self.strerror, need, free))


def _human(n: Optional[int]) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n is None or abs(n) < 1024 or unit == "GB":
            return "{:.1f} {}".format(n, unit) if unit != "B" else "{} B".format(n)
        n /= 1024
    return "{} B".format(n)


class _Counter(io.RawIOBase):
    """A binary sink that only counts what is written (the size a failed write needed)."""

    def __init__(self):
        self.size = 0

    def writable(self):
        return True

    def write(self, b):
        self.size += len(b)
        return len(b)

    def tell(self):
        return self.size


def _needed_bytes(write_fn: Callable[[IO], Any], mode: str) -> Optional[int]:
    """How many bytes ``write_fn`` writes, measured without touching the disk; None if it cannot
    be run twice."""
    sink = _Counter()
    try:
        if "b" in mode:
            write_fn(io.BufferedWriter(sink))  # flushes into the counter on close
        else:
            with io.TextIOWrapper(io.BufferedWriter(sink), encoding="utf-8") as f:
                write_fn(f)
                f.flush()
                return sink.size
        return sink.size
    except Exception:
        return None


def _free_bytes(folder: str) -> Optional[int]:
    try:
        st = os.statvfs(folder)
        return st.f_bavail * st.f_frsize
    except OSError:
        return None


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
TMP_PREFIX = ".tmp-"


def atomic_write(path: str, write_fn: Callable[[IO], Any], mode: str = "w", *, public: bool = True) -> None:
    """Write through a temporary file in the same folder, flushed to disk, then rename: readers
    (and a process killed at any moment) never see a partial file. The file gets the permissions
    ``open()`` would give it (``0o666`` less the umask: 0644 under umask 022, 0664 under 002), not
    the temporary file's private 0600. A full disk raises ``DiskFullError`` (which names the file
    and the space it needed) and leaves the previous file as it was.

    Args:
        path: the file to write.
        write_fn: called with the open temporary file.
        mode: ``"w"`` (text) or ``"wb"``.
        public: False keeps the file private to its owner (0600).
    """
    folder = osp.dirname(path) or "."
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        if public:
            os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, path)
        tmp = None
    except Exception as e:
        cause = _no_space(e)
        if cause is not None and not isinstance(e, DiskFullError):
            _remove(tmp)
            tmp = None
            raise DiskFullError(path, _needed_bytes(write_fn, mode), _free_bytes(folder),
                                cause.strerror or os.strerror(cause.errno)) from None
        raise
    finally:
        _remove(tmp)


def _no_space(e: BaseException) -> Optional[OSError]:
    """The ENOSPC / EDQUOT error behind ``e`` (writers such as ``torch.save`` re-raise it as
    another type), or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return e
        e = e.__cause__ or e.__context__
    return None


def _remove(tmp: Optional[str]) -> None:
    if tmp is not None:
        try:
            os.remove(tmp)
        except OSError:
            pass


def remove_stale_temporaries(folder: str, *, depth: int = 1) -> List[str]:
    """Delete the temporary files (``.tmp-*``) an ``atomic_write`` killed mid-write left in
    ``folder`` and its sub-folders down to ``depth``; call only while no other process writes
    there (e.g. holding the run folder's lock). Returns the paths removed."""
    removed = []
    if not osp.isdir(folder):
        return removed
    for entry in os.scandir(folder):
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            _remove(entry.path)
            removed.append(entry.path)
        elif depth > 0 and entry.is_dir(follow_symlinks=False):
            removed += remove_stale_temporaries(entry.path, depth=depth - 1)
    return removed


def write_json_atomic(path: str, obj: Any) -> None:
    """JSON written via a temporary file and a rename: a reader sees all of it or nothing."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=False))
