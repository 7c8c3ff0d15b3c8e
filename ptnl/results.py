"""Run records: the one writer of ``results.json`` / ``noise.json`` and the config digest."""
import hashlib
import json
import os.path as osp

from ptnl.dataset_base import atomic_write

RESULTS_FILE = "results.json"
NOISE_FILE = "noise.json"


def write_json_atomic(path, obj):
    """JSON written via a temporary file and a rename: a reader sees all of it or nothing."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=False))


def config_digest(cfg):
    """sha256 of the printed config: two runs with the same digest ran the same settings."""
    return hashlib.sha256(str(cfg).encode("utf-8")).hexdigest()


def is_done(run_dir):
    return osp.isfile(osp.join(run_dir, RESULTS_FILE))
