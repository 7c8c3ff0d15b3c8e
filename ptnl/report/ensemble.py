"""Seed ensembles: average the saved test logits of runs that differ only in their seed.

    python -m ptnl.report.ensemble DIR [DIR ...]

Every run folder under DIR with ``results.json`` and ``test_logits.pt`` joins the group of its
settings (as ``python -m ptnl.report`` groups them); each group reports the per-seed mean ±
std (population) and the accuracy of the averaged logits.
"""
import os.path as osp

import numpy as np

from ptnl.runs.files import LOGITS_FILE
from ptnl.runs.read import GROUP_KEYS, find_runs, load_run


def load_logits(run_dir):
    import torch  # here: tables of runs without saved logits are made without torch (a second or more)
    return torch.load(osp.join(run_dir, LOGITS_FILE), map_location="cpu", weights_only=True)


def ensemble_accuracy(states):
    """Accuracy (%) of the mean of the runs' logits; runs are aligned by image path."""
    import torch
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


def add_ensembles(rows):
    """Set ``row["ensemble"]``: the accuracy of the averaged test logits of a group's seeds, where
    at least two seeds ran and every one of them saved ``test_logits.pt`` (else None)."""
    for row in rows:
        dirs = row["run_dirs"]
        row["ensemble"] = None
        if len(dirs) > 1 and all(osp.isfile(osp.join(d, LOGITS_FILE)) for d in dirs):
            try:
                row["ensemble"] = ensemble_accuracy([load_logits(d) for d in dirs])
            except (OSError, ValueError, RuntimeError):
                row["ensemble"] = None
    return rows


def ensembles(dirs):
    """One record per group of runs with saved logits."""
    done, _ = find_runs(dirs)
    groups = {}
    for d in done:
        if osp.isfile(osp.join(d, LOGITS_FILE)):
            r = load_run(d)
            groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS) + (r.get("settings_digest"),), []).append(r)
    out = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        runs.sort(key=lambda r: r.get("seed"))
        accs = np.array([r["accuracy"] for r in runs])
        out.append(dict(zip(GROUP_KEYS, key), seeds=[r.get("seed") for r in runs], accuracies=accs.tolist(),
                        mean=float(accs.mean()), std=float(accs.std()),
                        selection=(runs[0].get("upl") or {}).get("selection"),
                        ensemble=ensemble_accuracy([load_logits(r["run_dir"]) for r in runs])))
    return out


def _selection(r):
    """What tells two UPL groups apart: the pseudo-label selection (topk | random) and the rest of
    the VARIANT folder (templates, pseudo-labelling backbones)."""
    sel, var = r.get("selection") or "", r.get("variant") or ""
    if var and sel and not var.startswith(sel):
        return "{} {}".format(sel, var)
    return var or sel


def format_ensembles(rows):
    """The table: one number format (two decimals) everywhere; a "variant" column (UPL's topk vs
    random selection, its templates) and the noise when any group has one."""
    from tabulate import tabulate
    variant = any(_selection(r) for r in rows)
    noisy = any(r.get("noise_rate") not in (None, 0, 0.0) for r in rows)
    body = []
    for r in rows:
        line = [r["dataset"], r["trainer"], r["backbone"]] + ([_selection(r)] if variant else []) + \
            (["{}-{}-{}".format(r["noise_type"], r["noise_mode"], r["noise_rate"])] if noisy else []) + \
            [r["loss"], r["num_shots"], " ".join("{}:{:.2f}".format(s, v) for s, v in zip(r["seeds"], r["accuracies"])),
             "{:.2f} (n=1)".format(r["mean"]) if len(r["seeds"]) == 1 else "{:.2f} ± {:.2f}".format(r["mean"], r["std"]),
             "{:.2f}".format(r["ensemble"])]
        body.append(line)
    headers = ["dataset", "trainer", "backbone"] + (["variant"] if variant else []) + (["noise"] if noisy else []) + \
        ["loss", "shots", "per seed", "mean ± std", "ensemble"]
    return tabulate(body, headers=headers, disable_numparse=True)


def main(argv=None, prog="python -m ptnl.report.ensemble"):
    import argparse
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+")
    a = p.parse_args(argv)
    rows = ensembles(a.dirs)
    if not rows:
        print("No runs with {} under {}".format(LOGITS_FILE, ", ".join(a.dirs)))
        return 1
    print(format_ensembles(rows))
    print("std: population (numpy default); ensemble: argmax of the seeds' summed test logits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
