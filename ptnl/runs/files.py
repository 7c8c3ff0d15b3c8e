"""The files of a run folder and their one writer: ``results.json`` (a run with it is done),
``noise.json``, per-epoch diagnostics, saved test logits, and the config digest."""
import hashlib
import os.path as osp

from ptnl.io import write_json_atomic  # noqa: F401  (the writer of every JSON file of a run)

RESULTS_FILE = "results.json"
NOISE_FILE = "noise.json"
DIAG_FILE = "epochs.json"
LOGITS_FILE = "test_logits.pt"
CONFUSION_FILE = "confusion_matrix.json"


def config_digest(cfg) -> str:
    """sha256 of the printed config: two runs with the same digest ran the same settings."""
    return hashlib.sha256(str(cfg).encode("utf-8")).hexdigest()


def is_done(run_dir: str) -> bool:
    return osp.isfile(osp.join(run_dir, RESULTS_FILE))
