"""Content-addressed on-disk cache for deterministic tensors (features, zero-shot logits).

An entry's file name is the sha256 of its key (a dict of everything the value depends on: weights
digest, dataset, split, transform, ...), so changing any part of the key misses the old entry.
Entries are written to a temporary file and renamed: an interrupted writer leaves at most a
``.tmp-*`` file, which is never read back.
"""
import hashlib
import json
import os
import os.path as osp
import shutil

import torch

from ptnl.io import atomic_write, user_cache_dir


def cache_root():
    return osp.join(user_cache_dir(), "features")


def cache_key(**parts):
    """The sha256 of the JSON of ``parts`` (keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


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
        n, total = size_report()
        print("{}: {} entries, {:.1f} MB".format(cache_root(), n, total / 2**20))


if __name__ == "__main__":
    main()
