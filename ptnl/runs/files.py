"""The files of a run folder and their one writer: ``results.json`` (a run with it is done),
``noise.json``, per-epoch diagnostics, saved test logits, ``diverged.json`` (a run stopped by a NaN
or infinite loss), the config digest, and the lock that keeps two processes from training into one
folder."""
import errno
import glob
import hashlib
import os
import os.path as osp
import re
import socket
import time
from typing import Dict, Optional

from ptnl.errors import PTNLError

try:
    import fcntl
except ImportError:  # not POSIX: no run-folder lock
    fcntl = None
from ptnl.io import remove_stale_temporaries, write_json_atomic  # noqa: F401  (the writer of every JSON file of a run)

RESULTS_FILE = "results.json"
NOISE_FILE = "noise.json"
DIAG_FILE = "epochs.json"
LOGITS_FILE = "test_logits.pt"
CONFUSION_FILE = "confusion_matrix.json"
DIVERGED_FILE = "diverged.json"  # the loss became NaN / inf: where, why; the run has no results.json
LOCK_FILE = ".ptnl-run.lock"  # held (fcntl) by the process training into the folder
EVALUATION_FILE = "evaluation.json"  # written by train.py --eval-only: the folder holds an evaluation, not a run


def config_digest(cfg) -> str:
    """sha256 of the printed config: two runs with the same digest ran the same settings."""
    return hashlib.sha256(str(cfg).encode("utf-8")).hexdigest()


def is_done(run_dir: str) -> bool:
    return osp.isfile(osp.join(run_dir, RESULTS_FILE))


def newest_checkpoint(run_dir: str) -> Optional[int]:
    """The epoch of the newest periodic checkpoint (``<model>/model.pth.tar-<epoch>``) in a run
    folder, where a re-run resumes from; None when there is none."""
    epochs = [int(m.group(1)) for p in glob.glob(osp.join(glob.escape(run_dir), "*", "model.pth.tar-*"))
              for m in [re.search(r"model\.pth\.tar-(\d+)$", p)] if m]
    return max(epochs) if epochs else None


class RunLocked(PTNLError, RuntimeError):
    """Another live process holds the run folder's lock."""


_HELD: Dict[str, int] = {}  # run folder -> open descriptor of its lock file (held until the process ends)


def lock_run_dir(run_dir: str) -> None:
    """Take the run folder's lock for the rest of this process, so that two processes resuming one
    folder never train into it twice: a POSIX lock (``fcntl.lockf``) on ``<run_dir>/.ptnl-run.lock``,
    which the kernel (and NFS's lock manager) drops when its process dies however it dies, so a
    dead process's lock is simply taken over. Held by a live process: ``RunLocked`` naming it. Once
    held, the temporary files of writes killed mid-way are removed.

    Args:
        run_dir: the run's output folder (created if missing).
    """
    key = osp.abspath(run_dir)
    if key in _HELD or fcntl is None:
        return
    os.makedirs(key, exist_ok=True)
    path = osp.join(key, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        raise RunLocked("Run folder {} is in use by {}: two processes must not train into one folder; wait for "
                        "it to finish (or stop it), or use another output folder".format(run_dir, holder)) from None
    os.ftruncate(fd, 0)
    os.write(fd, "pid {} on {} since {}\n".format(os.getpid(), socket.gethostname(),
                                                  time.strftime("%Y-%m-%d %H:%M:%S")).encode())
    _HELD[key] = fd
    remove_stale_temporaries(key, depth=1)


def release_run_dir(run_dir: str) -> None:
    """Give up the lock ``lock_run_dir`` took, once the run is over: a process that trains several
    runs one after another (``train.py --group``) frees each folder as its run ends."""
    fd = _HELD.pop(osp.abspath(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops its POSIX lock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return "process " + text if text.startswith("pid ") else "another process"
