"""Run records: the one writer of ``results.json`` / ``noise.json`` and the config digest."""
import hashlib
import json
import os
import os.path as osp

import numpy as np

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


# ----------------------------------------------------------------------------- reading runs
GROUP_KEYS = ("dataset", "trainer", "backbone", "noise_type", "noise_mode", "noise_rate", "loss", "num_shots",
              "n_ctx")


def find_runs(dirs):
    """Every run folder under ``dirs``: a folder holding ``results.json``, or a ``log.txt`` or a
    checkpoint folder without one (an incomplete run)."""
    done, incomplete = [], []
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            if RESULTS_FILE in filenames:
                done.append(dirpath)
                dirnames[:] = []
            elif "log.txt" in filenames:
                incomplete.append(dirpath)
                dirnames[:] = []
    return sorted(done), sorted(incomplete)


def load_run(run_dir):
    with open(osp.join(run_dir, RESULTS_FILE)) as f:
        r = json.load(f)
    noise = r.get("noise") or {}
    r["noise_type"], r["noise_mode"], r["noise_rate"] = noise.get("type"), noise.get("mode"), noise.get("rate")
    r["n_ctx"] = (r.get("prompt") or {}).get("n_ctx")
    r["run_dir"] = run_dir
    return r


def aggregate(records):
    """Group runs by everything but the seed: mean and population std (numpy's default, as
    CoOp's parse_test_res.py) of the test accuracy, and the seeds found."""
    groups = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        accs = np.array([r["accuracy"] for r in runs], dtype=float)
        rows.append(dict(zip(GROUP_KEYS, key), mean=float(accs.mean()), std=float(accs.std()),
                         n=len(runs), seeds=sorted(r.get("seed") for r in runs)))
    return rows


def format_table(rows, fmt="plain"):
    from tabulate import tabulate
    headers = ["dataset", "trainer", "backbone", "noise", "rate", "loss", "shots", "n_ctx", "accuracy (mean ± std)",
               "seeds"]
    body = [[r["dataset"], r["trainer"], r["backbone"], "{}-{}".format(r["noise_type"], r["noise_mode"]),
             r["noise_rate"], r["loss"], r["num_shots"], "" if r["n_ctx"] is None else r["n_ctx"],
             "{:.2f} ± {:.2f}".format(r["mean"], r["std"]),
             "{} ({})".format(r["n"], " ".join(str(s) for s in r["seeds"]))] for r in rows]
    return tabulate(body, headers=headers, tablefmt={"plain": "simple", "markdown": "github"}.get(fmt, fmt))


def format_pivot(rows, fmt="plain"):
    """One row per setting, one column per noise rate: mean ± std (seeds)."""
    from tabulate import tabulate
    rates = sorted({r["noise_rate"] for r in rows})
    keys = [k for k in GROUP_KEYS if k != "noise_rate"]
    table = {}
    for r in rows:
        table.setdefault(tuple(r[k] for k in keys), {})[r["noise_rate"]] = r
    headers = ["dataset", "trainer", "backbone", "noise", "loss", "shots", "n_ctx"] + \
        ["rate {}".format(rate) for rate in rates]
    body = []
    for key, cells in sorted(table.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        k = dict(zip(keys, key))
        body.append([k["dataset"], k["trainer"], k["backbone"], "{}-{}".format(k["noise_type"], k["noise_mode"]),
                     k["loss"], k["num_shots"], "" if k["n_ctx"] is None else k["n_ctx"]] +
                    ["{:.2f} ± {:.2f} ({})".format(cells[rt]["mean"], cells[rt]["std"], cells[rt]["n"])
                     if rt in cells else "" for rt in rates])
    return tabulate(body, headers=headers, tablefmt={"plain": "simple", "markdown": "github"}.get(fmt, fmt))


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m ptnl.results",
                                description="Mean ± std (population) of test accuracy over seeds for every run found.")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--format", default="plain", choices=["plain", "markdown"])
    p.add_argument("--pivot", action="store_true", help="one column per noise rate")
    a = p.parse_args(argv)
    done, incomplete = find_runs(a.dirs)
    if not done and not incomplete:
        print("No runs found under {}".format(", ".join(a.dirs)))
        return 1
    if done:
        rows = aggregate([load_run(d) for d in done])
        print(format_pivot(rows, a.format) if a.pivot else format_table(rows, a.format))
    for d in incomplete:
        print("incomplete (no results.json): {}".format(d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
