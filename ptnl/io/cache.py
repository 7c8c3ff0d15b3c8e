"""Content-addressed on-disk cache for deterministic tensors (features, zero-shot logits), and the
one definition of a file's identity that every cache of the project keys on.

An entry's file name is the sha256 of its key (a dict of everything the value depends on: weights
digest, dataset, split, transform, the identity of every image file, ...), so changing any part of
the key misses the old entry. A file's identity (``files_identity``) is its size and modification
time in nanoseconds (``stat``, cheap even for 50,000 images), or its size and the sha256 of its
bytes (``sha256``, TRAINER.PTNL.CACHE_VERIFY, for rewrites that keep size and mtime).
Entries are written to a temporary file and renamed: an interrupted writer leaves at most a
``.tmp-*`` file, which is never read back; a cache that cannot be written (full disk, read-only
folder) is skipped with one warning. Beside each entry ``<key>.json`` says what it holds (its key's
parts, written from ``cache_key``'s call) and which files, with which identities, it was computed
from, for ``python -m ptnl.io.cache report --check`` and ``clear --stale``.
"""
import errno
import hashlib
import json
import os
import os.path as osp
import pickle
import shutil
import time
from typing import Dict, List, Optional, Sequence

import torch

from ptnl.errors import ConfigError
from ptnl.io import atomic_write, user_cache_dir
from ptnl.io.log import ago, get_logger

log = get_logger(__name__)

VERIFY_MODES = ("stat", "sha256")  # TRAINER.PTNL.CACHE_VERIFY
_ABOUT = {}  # key -> its parts (keys with a "kind" only), written beside the entry by save()
_WARNED = set()  # cache roots that could not be written, warned about once per process
# Kinds whose value depends on image files: an entry of theirs without a record of its files was
# written before records were kept, and no key of today reaches it.
FILE_KINDS = ("image_features", "zeroshot_logits")


def check_verify(verify: str) -> str:
    """``verify`` if it is a known CACHE_VERIFY mode, else a ConfigError naming the config key."""
    if verify not in VERIFY_MODES:
        raise ConfigError("TRAINER.PTNL.CACHE_VERIFY must be one of {}, got {!r}".format(VERIFY_MODES, verify))
    return verify


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_identity(path: str, verify: str = "stat") -> Optional[list]:
    """What identifies the contents of the file ``path`` for the caches: ``[size, mtime_ns]``
    (``stat``) or ``[size, sha256 of the bytes]`` (``sha256``); None when there is no such file."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if check_verify(verify) == "stat":
        return [st.st_size, st.st_mtime_ns]
    return [st.st_size, file_sha256(path)]


def files_identity(paths: Sequence[str], verify: str = "stat") -> Dict:
    """The identity of the files ``paths``: ``{"verify": mode, "paths": [...], "ids": [...]}``
    (``file_identity`` of each, in order). Take it before reading the files: a file rewritten
    in between is then recorded with its old identity and recomputed by the next run."""
    paths = [str(p) for p in paths]
    return {"verify": check_verify(verify), "paths": paths, "ids": [file_identity(p, verify) for p in paths]}


def missing_files(paths: Sequence[str]) -> List[str]:
    """The ``paths`` that name no file now (``file_identity`` None)."""
    return [p for p in paths if file_identity(p) is None]


def identity_digest(files: Dict) -> str:
    """A cache-key part naming a ``files_identity`` record (paths, identities and mode)."""
    return hashlib.sha256(json.dumps([files["verify"], files["paths"], files["ids"]]).encode("utf-8")).hexdigest()


def changed_files(files: Dict) -> List[str]:
    """The paths of a ``files_identity`` record whose files changed or vanished since."""
    now = files_identity(files["paths"], files["verify"])["ids"]
    return [p for p, then, cur in zip(files["paths"], files["ids"], now) if cur is None or list(then or ()) != cur]


def cache_root():
    return osp.join(user_cache_dir(), "features")


def cache_key(**parts):
    """The sha256 of the JSON of ``parts`` (keys sorted)."""
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    if "kind" in parts:
        _ABOUT[key] = json.loads(json.dumps(parts, default=str))
    return key


def entry_path(key, root=None):
    return osp.join(root or cache_root(), key[:2], key + ".pt")


def load(key, root=None):
    """The cached object for ``key``, or None (also for an entry that cannot be read, with a
    warning: a copy truncated outside PTNL is recomputed, not a failed run)."""
    path = entry_path(key, root)
    if not osp.isfile(path):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, IndexError, pickle.UnpicklingError) as e:
        # damaged (truncated, garbage) or refused by weights_only (a pickled object: never run)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if isinstance(e, pickle.UnpicklingError) and "Weights only" in str(e):
            why = "it holds a pickled object, which weights_only=True refuses unrun"
        log.warning('Cache entry "{}" cannot be read ({}); computing it again'.format(path, why))
        return None


def save(key, obj, root=None, files=None) -> bool:
    """Write the entry ``key`` atomically, and beside it what it holds (the parts of its key) and
    ``files`` (the ``files_identity`` it was computed from). A cache that cannot be written (full
    disk, read-only folder) is skipped with one warning a process; returns whether it was written."""
    path = entry_path(key, root)
    try:
        atomic_write(path, lambda f: torch.save(obj, f), mode="wb")
        about = dict(_ABOUT.get(key, {}), **({"files": files} if files is not None else {}))
        if about:
            atomic_write(path[:-3] + ".json", lambda f: json.dump(about, f, separators=(",", ":")))
        return True
    except OSError as e:
        where = root or cache_root()
        level = log.debug if where in _WARNED else log.warning
        _WARNED.add(where)
        level('Cache not written ({}: {}); the run goes on without it. Free space or set PTNL_CACHE_DIR '
              'to a writable folder.'.format(getattr(e, "filename", None) or path,
                                             e.strerror or errno.errorcode.get(e.errno, e)))
        return False


def _size(n):
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return "{:.1f} {}".format(n / size, unit)
    return "{} B".format(n)


def entries(root=None):
    """Every entry under the cache root: path, bytes, modification time and ``about`` (its key's
    parts from ``<key>.json``; None for an entry written before these were kept)."""
    root = root or cache_root()
    out = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".pt"):
                path = osp.join(dirpath, f)
                about = None
                try:
                    with open(path[:-3] + ".json") as fh:
                        about = json.load(fh)
                except (OSError, ValueError):
                    pass
                out.append({"path": path, "bytes": osp.getsize(path), "mtime": osp.getmtime(path), "about": about})
    return sorted(out, key=lambda e: -e["mtime"])


def describe(entry, weights_names=None):
    """One entry in words: what it holds, for which weights and dataset."""
    a = entry["about"]
    if a is None:
        return "unknown content (written before entries were described)"
    kind = a.get("kind", "?")
    if kind == "file_digest":
        return "sha256 of the weights file {}".format(a.get("path"))
    if kind == "clip_init_draws":
        return "torch generator state after CLIP's initialisation (torch {})".format(a.get("torch"))
    weights = a.get("weights")
    wname = (weights_names or {}).get(weights) or (weights[:12] if isinstance(weights, str) else weights)
    what = {"image_features": "image features", "zeroshot_logits": "zero-shot logits"}.get(kind, kind)
    parts = ["{}: weights {}".format(what, wname), "dataset {}".format(a.get("dataset"))]
    if a.get("split"):
        parts.append("split {}".format(a["split"]))
    if a.get("classnames"):
        parts.append("{} classes".format(len(a["classnames"])))
    if isinstance(a.get("files"), dict):
        parts.append("{} images".format(len(a["files"].get("paths", ()))))
    return ", ".join(parts)


def entry_files(entry) -> Optional[Dict]:
    """The ``files_identity`` record an entry was computed from: the one saved beside it, or for a
    weights-file digest the file's path, size and mtime its key names; None when it names none."""
    a = entry["about"] or {}
    if isinstance(a.get("files"), dict):
        return a["files"]
    if a.get("kind") == "file_digest" and a.get("path"):
        return {"verify": "stat", "paths": [a["path"]], "ids": [[a.get("size"), a.get("mtime_ns")]]}
    return None


def stale_reason(entry) -> Optional[str]:
    """Why an entry no longer answers for the files on disk (``"3 of 120 files changed or
    missing"``, or an entry of a file-based kind with no record of its files, which no key of
    today reaches), or None when it is current or depends on no file."""
    files = entry_files(entry)
    if files is None:
        kind = (entry["about"] or {}).get("kind")
        return "written before entries recorded their files" if kind in FILE_KINDS else None
    changed = changed_files(files)
    if not changed:
        return None
    return "{} of {} files changed or missing, e.g. {}".format(len(changed), len(files["paths"]), changed[0])


def _weights_names(es, root):
    """weights sha256 -> the weights file's name, from the file_digest entries."""
    names = {}
    for e in es:
        if (e["about"] or {}).get("kind") == "file_digest":
            try:
                names[load(osp.basename(e["path"])[:-3], root)["sha256"]] = osp.basename(e["about"]["path"])
            except (OSError, KeyError, TypeError, RuntimeError):
                pass
    return names


def report(root=None, now=None, check=False):
    """The lines of ``python -m ptnl.io.cache report``: the total, then one line per kind of entry
    (newest first; entries that read the same are counted on one line): size, age, what it holds
    and for which weights and dataset. ``check``: also how many entries are stale against the
    files on disk (``stale_reason``), and which."""
    root = root or cache_root()
    now = time.time() if now is None else now
    es = entries(root)
    names = _weights_names(es, root)
    lines = ["{}: {} entries, {}".format(root, len(es), _size(sum(e["bytes"] for e in es)))]
    groups = {}  # description -> [entries], in order of the newest
    for e in es:
        groups.setdefault(describe(e, names), []).append(e)
    for text, group in groups.items():
        count = "" if len(group) == 1 else " ({} entries)".format(len(group))
        lines.append("  {:>9}  {:>6} old  {}{}".format(_size(sum(e["bytes"] for e in group)),
                                                        ago(now - group[0]["mtime"]), text, count))
    if check:
        stale = [(e, r) for e in es for r in [stale_reason(e)] if r]
        lines.append("stale: {} of {} entries ({}) no longer match the files on disk{}".format(
            len(stale), len(es), _size(sum(e["bytes"] for e, _ in stale)),
            "; python -m ptnl.io.cache clear --stale removes them" if stale else ""))
        reasons = {}
        for e, r in stale:
            reasons.setdefault((describe(e, names), r), []).append(e)
        for (text, r), group in reasons.items():
            lines.append("  {}{}: {}".format(text, "" if len(group) == 1 else " ({} entries)".format(len(group)), r))
    return lines


def size_report(root=None):
    """(number of entries, total bytes) under the cache root."""
    root = root or cache_root()
    n = total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".pt"):
                n += 1
                total += osp.getsize(osp.join(dirpath, f))
    return n, total


def remove_entry(entry):
    """Delete an entry and its description."""
    for path in (entry["path"], entry["path"][:-3] + ".json"):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def clear(root=None, stale=False):
    """Empty the cache folder; ``stale``: remove only the entries ``stale_reason`` names, and
    return them."""
    if not stale:
        shutil.rmtree(root or cache_root(), ignore_errors=True)
        return []
    gone = [e for e in entries(root) if stale_reason(e)]
    for e in gone:
        remove_entry(e)
    return gone


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m ptnl.io.cache", description="Report or clear PTNL's feature cache.")
    p.add_argument("action", choices=["report", "clear"])
    p.add_argument("--check", action="store_true",
                   help="report: also count the entries that no longer match the files on disk")
    p.add_argument("--stale", action="store_true",
                   help="clear: remove only the entries that no longer match the files on disk")
    a = p.parse_args(argv)
    if a.check and a.action != "report" or a.stale and a.action != "clear":
        p.error("--check goes with report, --stale with clear")  # a mistyped clear must not empty the cache
    if a.action == "clear":
        if a.stale:
            gone = clear(stale=True)
            print("Removed {} stale entries ({}) from {}".format(
                len(gone), _size(sum(e["bytes"] for e in gone)), cache_root()))
        else:
            clear()
            print("Cleared {}".format(cache_root()))
    else:
        print("\n".join(report(check=a.check)))


if __name__ == "__main__":
    main()
