"""Seed ensembles: average the saved test logits of runs that differ only in their seed.

    python -m ptnl.report.ensemble DIR [DIR ...]

Every run folder under DIR with ``results.json`` and ``test_logits.pt`` joins the group of its
settings (as ``python -m ptnl.report`` groups them); each group reports the per-seed mean ±
std (population) and the accuracy of the averaged logits.
"""
import os.path as osp

import numpy as np
import torch

from ptnl.runs.files import LOGITS_FILE
from ptnl.runs.read import GROUP_KEYS, find_runs, load_run


def load_logits(run_dir):
    return torch.load(osp.join(run_dir, LOGITS_FILE), map_location="cpu", weights_only=True)


def ensemble_accuracy(states):
    """Accuracy (%) of the mean of the runs' logits; runs are aligned by image path."""
    ref = states[0]
    order = {p: i for i, p in enumerate(ref["impaths"])}
    total = torch.zeros_like(ref["logits"], dtype=torch.float64)
    for st in states:
        if sorted(st["impaths"]) != sorted(ref["impaths"]):
            raise ValueError("Runs were tested on different images; they cannot be ensembled")
        idx = torch.tensor([order[p] for p in st["impaths"]])
        total[idx] += st["logits"].double()
    pred = total.argmax(dim=1)
    return 100.0 * float((pred == ref["labels"]).double().mean())


def ensembles(dirs):
    """One record per group of runs with saved logits."""
    done, _ = find_runs(dirs)
    groups = {}
    for d in done:
        if osp.isfile(osp.join(d, LOGITS_FILE)):
            r = load_run(d)
            groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    out = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        runs.sort(key=lambda r: r.get("seed"))
        accs = np.array([r["accuracy"] for r in runs])
        out.append(dict(zip(GROUP_KEYS, key), seeds=[r.get("seed") for r in runs], accuracies=accs.tolist(),
                        mean=float(accs.mean()), std=float(accs.std()),
                        ensemble=ensemble_accuracy([load_logits(r["run_dir"]) for r in runs])))
    return out


def main(argv=None, prog="python -m ptnl.report.ensemble"):
    import argparse
    from tabulate import tabulate
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+")
    a = p.parse_args(argv)
    rows = ensembles(a.dirs)
    if not rows:
        print("No runs with {} under {}".format(LOGITS_FILE, ", ".join(a.dirs)))
        return 1
    print(tabulate([[r["dataset"], r["trainer"], r["backbone"], r["loss"], r["num_shots"],
                     " ".join("{}:{:.2f}".format(s, v) for s, v in zip(r["seeds"], r["accuracies"])),
                     "{:.2f} ± {:.2f}".format(r["mean"], r["std"]), "{:.2f}".format(r["ensemble"])] for r in rows],
                   headers=["dataset", "trainer", "backbone", "loss", "shots", "per seed", "mean ± std",
                            "ensemble"]))
    print("std: population (numpy default); ensemble: argmax of the seeds' summed test logits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
