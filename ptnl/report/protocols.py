"""Tables of the two transfer protocols, from run folders (``results.json``) and the ``--eval-only``
folders that evaluated them (``evaluation.json``, whose ``model_dir`` names the trained run):

- base-to-new (CoCoOp's; ``scripts/ptnl/base2new.sh``): per setting, the base accuracy (the test of
  the run trained with DATASET.SUBSAMPLE_CLASSES base), the new accuracy (its evaluation on the new
  classes) and their harmonic mean H = 2BN/(B+N) of the seed means, as CoCoOp's tables (and their
  averages over datasets: H of the averaged B and N, not the mean of the H's);
- a setting's seeds are runs of equal settings digests (``ptnl.runs.identity``): runs of another N_CTX,
  optimiser, ... in the same folders are rows of their own, with a column naming the keys that differ;
- cross-dataset / domain generalisation (``scripts/ptnl/xd.sh``): per trained setting, its own test
  accuracy and one column per target dataset it was evaluated on.

    python -m ptnl.report.protocols base2new OUT/...   |   python -m ptnl.report.protocols xd OUT/...
"""
import argparse
import json
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ptnl.runs.files import EVALUATION_FILE, RESULTS_FILE
from ptnl.runs.identity import baseline, identity_settings, known_defaults, show_value

FORMATS = ("plain", "markdown", "csv")
# what identifies a trained setting across seeds (the run records' fields)
SETTING_KEYS = ("dataset", "trainer", "backbone", "num_shots", "noise", "loss")


def harmonic_mean(base: float, new: float) -> float:
    """2BN/(B+N), CoCoOp's H of base and new accuracy (0 when both are 0)."""
    return 2.0 * base * new / (base + new) if base + new > 0 else 0.0


def _read(path: str) -> Optional[Dict]:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("accuracy"), (int, float)) else None


def collect(dirs: Iterable[str]) -> (Dict[str, Dict], List[Dict]):
    """(trained runs by absolute folder, evaluations) found under ``dirs``."""
    runs, evaluations = {}, []
    for top in dirs:
        for folder, _, files in os.walk(top):
            if RESULTS_FILE in files and (r := _read(osp.join(folder, RESULTS_FILE))) is not None:
                runs[osp.abspath(folder)] = dict(r, run_dir=osp.abspath(folder))
            elif EVALUATION_FILE in files and (e := _read(osp.join(folder, EVALUATION_FILE))) is not None:
                evaluations.append(dict(e, run_dir=osp.abspath(folder)))
    return runs, evaluations


def _subsample(record: Dict) -> str:
    return (record.get("config") or {}).get("DATASET.SUBSAMPLE_CLASSES", "all")


def _setting(record: Dict) -> tuple:
    """(dataset, trainer, backbone, shots, "type-mode-rate", loss): a trained setting (``SETTING_KEYS``)."""
    noise = record.get("noise") or {}
    return tuple("{}-{}-{}".format(noise.get("type"), noise.get("mode"), noise.get("rate")) if k == "noise"
                 else record.get(k) for k in SETTING_KEYS)


def _identity(record: Dict) -> Optional[Dict]:
    """The run's result-changing settings not at their default (``ptnl.runs.identity.identity_settings``:
    what its settings digest covers); None for a record without its config (older runs)."""
    conf = record.get("config")
    if not isinstance(conf, dict):
        return None
    return identity_settings(conf, record.get("config_sections"), record.get("config_defaults"))


def _digest_key(identity: Optional[Dict], drop_dataset: bool = False) -> Optional[str]:
    """``identity`` as one comparable string (the settings digest's text); ``drop_dataset``: without
    the dataset's name and own section (the settings a row of another dataset may share)."""
    if identity is None:
        return None
    if drop_dataset:
        identity = {k: v for k, v in identity.items() if k != "DATASET.NAME" and not (
            k.startswith("DATASET.") and k.count(".") >= 2 and not k.startswith("DATASET.NOISE."))}
    return json.dumps(identity, sort_keys=True, default=str)


def _group_runs(runs: Iterable[Dict]) -> "OrderedDict":
    """Runs grouped as seeds of one trained setting: equal ``SETTING_KEYS`` and equal settings digests
    (runs of another N_CTX, CSC, optimiser, ... beside them are never averaged in)."""
    groups = OrderedDict()
    for r in runs:
        groups.setdefault((_setting(r), _digest_key(_identity(r))), []).append(r)
    return groups


def _name_differences(rows: List[Dict]) -> None:
    """``differs`` of each row: "" unless rows of the same ``SETTING_KEYS`` ran other settings; then
    the keys that tell them apart, as "KEY=value ..." (their values, or defaults where not set)."""
    families = OrderedDict()
    for r in rows:
        families.setdefault(tuple(r[k] for k in SETTING_KEYS), []).append(r)
    known = known_defaults()
    for fam in families.values():
        for r in fam:
            r["differs"] = ""
        if len(fam) < 2:
            continue
        recorded = [r for r in fam if r["_identity"] is not None]
        keys = sorted({k for r in recorded for k in r["_identity"]})

        def value(r, k):
            return show_value(r["_identity"][k] if k in r["_identity"] else baseline(k, r["_defaults"], known))
        varying = [k for k in keys if len({value(r, k) for r in recorded}) > 1]
        for r in fam:
            shown = " ".join("{}={}".format(k, value(r, k)) for k in varying) if r["_identity"] is not None else ""
            r["differs"] = shown or "settings not recorded"


def _stats(values: Sequence[float]) -> Dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()) if len(a) else float("nan"), "std": float(a.std()) if len(a) else float("nan"),
            "n": int(len(a))}


def base2new_rows(runs: Dict[str, Dict], evaluations: List[Dict]) -> List[Dict]:
    """One row per trained setting of base runs: base, new (over the seeds evaluated on new) and H."""
    new_of = {}
    for e in evaluations:
        if _subsample(e) == "new" and e.get("model_dir"):
            new_of[osp.abspath(e["model_dir"])] = e["accuracy"]
    groups = _group_runs(runs[folder] for folder in sorted(runs) if _subsample(runs[folder]) == "base")
    rows = []
    for (key, _), members in groups.items():
        base = _stats([r["accuracy"] for r in members])
        new = _stats([new_of[r["run_dir"]] for r in members if r["run_dir"] in new_of])
        row = dict(zip(SETTING_KEYS, key))
        row.update(base=base, new=new, seeds=sorted(r.get("seed") for r in members),
                   missing_new=sorted(r.get("seed") for r in members if r["run_dir"] not in new_of),
                   hm=harmonic_mean(base["mean"], new["mean"]) if new["n"] else float("nan"),
                   _identity=_identity(members[0]), _defaults=members[0].get("config_defaults"))
        rows.append(row)
    _name_differences(rows)
    return rows


def average_row(rows: List[Dict]) -> Optional[Dict]:
    """CoCoOp's "Average over datasets" of rows of one trainer, backbone, noise and loss: the mean of
    the base and of the new accuracies, and H of those means (None for a dataset listed twice: rows of
    other settings, not recorded, that an average would mix)."""
    datasets = [r["dataset"] for r in rows if r.get("dataset") is not None]
    if len(rows) < 2 or any(not r["new"]["n"] for r in rows) or len(set(datasets)) < len(datasets):
        return None
    base = float(np.mean([r["base"]["mean"] for r in rows]))
    new = float(np.mean([r["new"]["mean"] for r in rows]))
    return {"base": base, "new": new, "hm": harmonic_mean(base, new), "datasets": len(rows)}


def _cell(s: Dict) -> str:
    if not s["n"]:
        return "—"
    return "{:.2f} (n=1)".format(s["mean"]) if s["n"] == 1 else "{:.2f} ± {:.2f}".format(s["mean"], s["std"])


def _render(headers: List[str], body: List[List], fmt: str) -> str:
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(headers)
        w.writerows(body)
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate
    return tabulate(body, headers=headers, tablefmt={"plain": "simple", "markdown": "github"}[fmt],
                    disable_numparse=True)


def format_base2new(rows: List[Dict], fmt: str = "plain") -> str:
    """The base-to-new table: one row per setting, then per (trainer, backbone, noise, loss) with
    several datasets their average row."""
    differs = any(r.get("differs") for r in rows)  # rows of one setting that ran other settings: say which
    headers = ["dataset", "trainer", "backbone", "shots", "noise", "loss"] + ["settings"] * differs + [
        "base", "new", "H", "seeds"]
    body = []
    for r in rows:
        hm = "—" if np.isnan(r["hm"]) else "{:.2f}".format(r["hm"])
        seeds = " ".join(str(s) for s in r["seeds"])
        if r["missing_new"]:
            seeds += " (no new: {})".format(" ".join(str(s) for s in r["missing_new"]))
        body.append([r["dataset"], r["trainer"], r["backbone"], r["num_shots"], r["noise"], r["loss"]]
                    + [r.get("differs", "")] * differs + [_cell(r["base"]), _cell(r["new"]), hm, seeds])
    families = OrderedDict()  # the same settings on other datasets (never two settings of one dataset)
    for r in rows:
        key = (r["trainer"], r["backbone"], r["num_shots"], r["noise"], r["loss"],
               _digest_key(r.get("_identity"), drop_dataset=True))
        families.setdefault(key, []).append(r)
    for (trainer, backbone, shots, noise, loss, _), members in families.items():
        avg = average_row(members)
        if avg is not None:
            body.append(["average ({} datasets)".format(avg["datasets"]), trainer, backbone, shots, noise, loss]
                        + [members[0].get("differs", "")] * differs
                        + ["{:.2f}".format(avg["base"]), "{:.2f}".format(avg["new"]), "{:.2f}".format(avg["hm"]), ""])
    return _render(headers, body, fmt)


def xd_rows(runs: Dict[str, Dict], evaluations: List[Dict]) -> (List[Dict], List[str]):
    """(one row per trained setting with evaluations: its own test and each target's mean over
    seeds, the targets in order of first appearance)."""
    groups, targets = OrderedDict(), []
    for e in evaluations:
        source = runs.get(osp.abspath(e.get("model_dir") or ""))
        if source is None or _subsample(e) != "all":
            continue
        target = e.get("dataset")
        if target not in targets:
            targets.append(target)
        row = groups.setdefault((_setting(source), _digest_key(_identity(source))),
                                {"sources": {}, "targets": {}, "_identity": _identity(source),
                                 "_defaults": source.get("config_defaults")})
        row["sources"][source["run_dir"]] = source
        row["targets"].setdefault(target, []).append(e["accuracy"])
    rows = []
    for (key, _), g in groups.items():
        row = dict(zip(SETTING_KEYS, key), _identity=g["_identity"], _defaults=g["_defaults"])
        row["source"] = _stats([s["accuracy"] for s in g["sources"].values()])
        row["targets"] = {t: _stats(v) for t, v in g["targets"].items()}
        rows.append(row)
    _name_differences(rows)
    return rows, targets


def format_xd(rows: List[Dict], targets: List[str], fmt: str = "plain") -> str:
    """The cross-dataset table: the trained setting, its own test, one column per target and the
    targets' average (of the seed means)."""
    differs = any(r.get("differs") for r in rows)
    headers = (["trained on", "trainer", "backbone", "shots", "noise", "loss"] + ["settings"] * differs + ["source"]
               + targets + ["average"])
    body = []
    for r in rows:
        means = [r["targets"][t]["mean"] for t in targets if t in r["targets"]]
        body.append([r["dataset"], r["trainer"], r["backbone"], r["num_shots"], r["noise"], r["loss"]]
                    + [r.get("differs", "")] * differs + [_cell(r["source"])]
                    + [_cell(r["targets"][t]) if t in r["targets"] else "—" for t in targets]
                    + ["{:.2f}".format(float(np.mean(means))) if means else "—"])
    return _render(headers, body, fmt)


def main(argv: Optional[List[str]] = None, prog: str = "python -m ptnl.report.protocols") -> int:
    """The protocols' tables: ``PROTOCOL DIR [DIR ...] [--format plain|markdown|csv]``; returns the exit
    status (1: nothing of the protocol under the folders; 2: a folder that does not exist)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("protocol", choices=("base2new", "xd"))
    parser.add_argument("dirs", nargs="+", help="folders holding the trained runs and their evaluations")
    parser.add_argument("--format", choices=FORMATS, default="plain")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not osp.isdir(d)]
    if missing:
        print("Error: no such folder: {}".format(", ".join(missing)), file=sys.stderr)
        return 2
    runs, evaluations = collect(args.dirs)
    if args.protocol == "base2new":
        rows = base2new_rows(runs, evaluations)
        text = format_base2new(rows, args.format) if rows else ""
        empty = "no run trained with DATASET.SUBSAMPLE_CLASSES base under {}".format(" ".join(args.dirs))
    else:
        rows, targets = xd_rows(runs, evaluations)
        text = format_xd(rows, targets, args.format) if rows else ""
        empty = "no --eval-only evaluation of a trained run under {}".format(" ".join(args.dirs))
    if not rows:
        print("Error: " + empty, file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
