"""python -m ptnl.noise export RUN_DIR --out FILE: a run's training set as a noisy-set file.

The file (CSV or JSON, by the name's extension) lists every training item in training order: the
image path relative to the dataset root, its class name and true label, and the given label it was
trained with; its header names the dataset, class list, shots, seed, protocol, type, rate,
realised rate and the split file's sha256. ``DATASET.NOISE.FILE FILE`` trains any trainer on
exactly that set (docs/export.md).
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, Optional

from ptnl.errors import PTNLError
from ptnl.noise.files import FORMATS, file_format, noisy_set_table, write_noisy_set
from ptnl.noise.types import NoiseError
from ptnl.runs.files import NOISE_FILE, RESULTS_FILE


def _read_json(path: str) -> Optional[Dict]:
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise NoiseError('"{}" is not valid JSON ({})'.format(path, e)) from None


def export_run(run_dir: str, out: str, *, root: Optional[str] = None) -> Dict:
    """Write the training set of the run in ``run_dir`` to ``out`` (.csv or .json); returns the header.

    Args:
        run_dir: a run folder holding ``noise.json`` (any run with label noise, finished or not).
        out: the file to write.
        root: the dataset root its image paths are made relative to (default: the run's DATASET.ROOT).
    """
    file_format(out)
    if not osp.isdir(run_dir):
        raise NoiseError('Run folder "{}" does not exist'.format(run_dir))
    record = _read_json(osp.join(run_dir, NOISE_FILE))
    if record is None:
        raise NoiseError('No {} in "{}": only a run with label noise (DATASET.NOISE.RATE > 0, mode release or a '
                         "DATASET.NOISE.FILE) records its training set".format(NOISE_FILE, run_dir))
    results = _read_json(osp.join(run_dir, RESULTS_FILE)) or {}
    config = results.get("config") or {}
    root = root or record.get("root") or config.get("DATASET.ROOT")
    dataset = record.get("dataset") or results.get("dataset")
    classnames = record.get("classnames") or results.get("classnames")
    missing = [name for name, value in (("the dataset root (--root)", root), ("the dataset name", dataset),
                                        ("the class names", classnames)) if not value]
    if missing:
        raise NoiseError('"{}" does not say {} (its noise.json predates them and it has no results.json)'.format(
            run_dir, ", ".join(missing)))
    header, rows = noisy_set_table(record, root=osp.abspath(osp.expanduser(root)), dataset=dataset,
                                   classnames=classnames, num_shots=results.get("num_shots"),
                                   seed=results.get("seed"))
    write_noisy_set(out, header, rows)
    return header


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptnl.noise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    e = sub.add_parser("export", help="write a run's training set as a noisy-set file (CSV or JSON)",
                       description="Write the training set of RUN_DIR (its noise.json) as a noisy-set file.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="the run's output folder (holds noise.json)")
    e.add_argument("--out", required=True, metavar="FILE", help="the file to write: {}".format(" or ".join(FORMATS)))
    e.add_argument("--root", metavar="DIR", help="dataset root the image paths are relative to "
                                                 "(default: the run's DATASET.ROOT)")
    a = p.parse_args(argv)
    try:
        header = export_run(a.run_dir, a.out, root=a.root)
    except (PTNLError, OSError) as err:
        print("Error: {}".format(err), file=sys.stderr)
        return 2
    print("{}: {} items of {} ({} {} rate {}, realised {:.4f})".format(
        a.out, header["num_samples"], header["dataset"], header["type"], header["protocol"], header["rate"],
        header["realised_rate"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
