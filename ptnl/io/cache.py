"""Content-addressed on-disk cache for deterministic tensors (features, zero-shot logits).

An entry's file name is the sha256 of its key (a dict of everything the value depends on: weights
digest, dataset, split, transform, ...), so changing any part of the key misses the old entry.
Entries are written to a temporary file and renamed: an interrupted writer leaves at most a
``.tmp-*`` file, which is never read back. Beside each entry ``<key>.json`` says what it holds (its
key's parts, written from ``cache_key``'s call), for ``python -m ptnl.io.cache report``.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import time

import torch

from ptnl.io import atomic_write, user_cache_dir, write_json_atomic
from ptnl.io.log import ago

_ABOUT = {}  # key -> its parts (keys with a "kind" only), written beside the entry by save()


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
    """The cached object for ``key``, or None."""
    path = entry_path(key, root)
    if not osp.isfile(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save(key, obj, root=None):
    atomic_write(entry_path(key, root), lambda f: torch.save(obj, f), mode="wb")
    if key in _ABOUT:
        write_json_atomic(entry_path(key, root)[:-3] + ".json", _ABOUT[key])


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
    return ", ".join(parts)


def report(root=None, now=None):
    """The lines of ``python -m ptnl.io.cache report``: the total, then one line per entry (newest
    first): size, age, what it holds and for which weights and dataset."""
    root = root or cache_root()
    now = time.time() if now is None else now
    es = entries(root)
    names = {}  # weights sha256 -> the file's name, from the file_digest entries
    for e in es:
        if (e["about"] or {}).get("kind") == "file_digest":
            try:
                names[load(osp.basename(e["path"])[:-3], root)["sha256"]] = osp.basename(e["about"]["path"])
            except (OSError, KeyError, TypeError, RuntimeError):
                pass
    lines = ["{}: {} entries, {}".format(root, len(es), _size(sum(e["bytes"] for e in es)))]
    for e in es:
        lines.append("  {:>9}  {:>6} old  {}".format(_size(e["bytes"]), ago(now - e["mtime"]), describe(e, names)))
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


def clear(root=None):
    shutil.rmtree(root or cache_root(), ignore_errors=True)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m ptnl.io.cache", description="Report or clear PTNL's feature cache.")
    p.add_argument("action", choices=["report", "clear"])
    a = p.parse_args(argv)
    if a.action == "clear":
        clear()
        print("Cleared {}".format(cache_root()))
    else:
        print("\n".join(report()))


if __name__ == "__main__":
    main()
