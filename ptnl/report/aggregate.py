"""Runs grouped by everything but the seed: mean and std of test accuracy, seeds found and missing."""
from typing import Dict, Iterable, List

import numpy as np

from ptnl.runs.identity import ABSENT, baseline, ignored_keys, known_defaults, show_value
from ptnl.runs.layout import setting_dir
from ptnl.runs.read import GROUP_KEYS, RUN_SETTINGS, seed_free

NOT_RECORDED = "settings not recorded"  # a run from before results.json kept its config, beside one that did
ZERO_SHOT = "ZeroshotCLIP"
# A seed has collapsed when it ends near chance or far below zero-shot CLIP: below CHANCE_FACTOR x
# chance (100 / number of classes), or more than ZERO_SHOT_MARGIN points below the (lowest) zero-shot
# accuracy of the same dataset and backbone among the runs read. Flagged, still averaged: a high
# noise rate can bring honest runs there too (the paper's linear classifiers at 75%), but a broken
# seed or a best-of-sweep must not hide in a mean ± std.
CHANCE_FACTOR = 1.5
ZERO_SHOT_MARGIN = 25.0
COLLAPSE_RULE = ("accuracy below {:g} x chance (100% / number of classes), or more than {:g} points below zero-shot "
                 "CLIP on the same dataset and backbone (where a ZeroshotCLIP run is among those read)").format(
                     CHANCE_FACTOR, ZERO_SHOT_MARGIN)

STD_NAMES = {0: "population std (ddof=0, numpy's default, as CoOp's parse_test_res.py)",
             1: "sample std (ddof=1)"}


def _sort_key(values):
    """Numbers numerically, then strings, then unknowns."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (2, 0, "") if v is None else (1, 0, str(v))
                 for v in values)


def _seed_key(seed):
    return _sort_key([seed])


def _partition_means(runs):
    """Mean final partition precision and recall over the runs of a sample-selection method
    (results.json ``partition_final``), or None when the runs have none."""
    finals = [r.get("partition_final") for r in runs]
    if not finals or any(not isinstance(f, dict) for f in finals):
        return None
    out = {}
    for key in ("precision", "recall"):
        values = [f[key] for f in finals if f.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    if any(f.get("scored_on") for f in finals):  # Food-101N: over the items with verification labels
        out["scored_on"] = "verified"
    return out


def aggregate(records: Iterable[Dict], incomplete: Iterable[Dict] = (), ddof: int = 0) -> List[Dict]:
    """Group runs by everything but the seed; per group the mean and std of the test accuracy
    (``ddof=0``: population std, numpy's default, as CoOp's parse_test_res.py; ``ddof=1``: sample
    std, NaN for one seed), the number of seeds and which they are.

    Missing seeds: a group is expected to have every seed found in any group of the same dataset
    and backbone (the same sweep), finished or not; ``missing`` lists the ones it lacks and
    ``incomplete`` the unfinished runs in its own settings folder (never averaged in)."""
    groups = {}
    for r in records:  # runs whose settings digests differ are never averaged (no digest: legacy, CoOp logs)
        groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS) + (r.get("settings_digest"),), []).append(r)
    by_setting = {}
    for key, runs in groups.items():
        for r in runs:
            if setting_dir(r["run_dir"]):
                by_setting.setdefault(setting_dir(r["run_dir"]), key)
    attached = {}
    for inc in incomplete:
        key = by_setting.get(setting_dir(inc["run_dir"]))
        if key is not None:
            attached.setdefault(key, []).append(inc)
    sweep_seeds = {}
    for key, runs in groups.items():
        k = dict(zip(GROUP_KEYS, key[:len(GROUP_KEYS)]))
        if seed_free(k["trainer"]):
            continue
        seeds = sweep_seeds.setdefault((k["dataset"], k["backbone"]), set())
        seeds.update(r.get("seed") for r in runs + attached.get(key, []) if r.get("seed") is not None)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        k = dict(zip(GROUP_KEYS, key[:len(GROUP_KEYS)]))
        runs = sorted(runs, key=lambda r: _seed_key(r.get("seed")))
        accs = np.array([r["accuracy"] for r in runs], dtype=float)
        seeds = [r.get("seed") for r in runs]
        expected = set() if seed_free(k["trainer"]) else sweep_seeds.get((k["dataset"], k["backbone"]), set())
        row = dict(k, mean=float(accs.mean()),
                   std=float(accs.std(ddof=ddof)) if len(accs) > ddof else float("nan"), ddof=ddof,
                   n=len(runs), seeds=seeds, accuracies=accs.tolist(),
                   missing=sorted(expected - set(seeds), key=_seed_key),
                   duplicates=sorted({s for s in seeds if seeds.count(s) > 1}, key=_seed_key),
                   incomplete=sorted(attached.get(key, []), key=lambda r: _seed_key(r.get("seed"))),
                   from_log=[r for r in runs if r.get("source") == "log"],
                   run_dirs=[r["run_dir"] for r in runs], settings_digest=key[-1], config=runs[0].get("config"),
                   partition=_partition_means(runs), pocket_world=any(r.get("pocket_world") for r in runs),
                   run_settings=_run_settings(runs), loss_options=runs[0].get("loss_options"),
                   classes=[r.get("classes") for r in runs])
        rows.append(row)
    _name_differences(rows)
    flag_collapsed(rows)
    return rows


def _run_settings(runs):
    """{setting: sorted list of the values its runs recorded} for each of ``RUN_SETTINGS`` that
    applies to them (None in the list: a run that did not record it)."""
    out = {}
    for key in RUN_SETTINGS:
        values = {repr(v): v for r in runs for v in [(r.get("run_settings") or {}).get(key, ABSENT)]
                  if v is not ABSENT}
        if values:
            out[key] = [values[k] for k in sorted(values)]
    return out


def zero_shot_reference(rows) -> Dict:
    """{(dataset, backbone): the lowest mean accuracy of the zero-shot CLIP groups of that dataset and
    backbone}: the reference of ``flag_collapsed``."""
    ref = {}
    for r in rows:
        if r["trainer"] == ZERO_SHOT and np.isfinite(r["mean"]):
            k = (r["dataset"], r["backbone"])
            ref[k] = min(ref.get(k, r["mean"]), r["mean"])
    return ref


def collapse_reason(accuracy, classes=None, zero_shot=None):
    """Why a seed's test accuracy counts as collapsed under ``COLLAPSE_RULE`` ("" when it does not)."""
    why = []
    if classes and classes > 1 and accuracy < CHANCE_FACTOR * 100.0 / classes:
        why.append("below {:.2f}% = {:g} x chance ({} classes)".format(CHANCE_FACTOR * 100.0 / classes, CHANCE_FACTOR,
                                                                      classes))
    if zero_shot is not None and accuracy < zero_shot - ZERO_SHOT_MARGIN:
        why.append("below {:.2f}% = zero-shot CLIP's {:.2f}% - {:g} points".format(zero_shot - ZERO_SHOT_MARGIN,
                                                                                 zero_shot, ZERO_SHOT_MARGIN))
    return "; ".join(why)


def flag_collapsed(rows) -> None:
    """Set ``row["collapsed"]``: [{"run_dir", "seed", "accuracy", "why"}] of the seeds that collapsed
    (``COLLAPSE_RULE``); zero-shot runs are held against chance only."""
    ref = zero_shot_reference(rows)
    for r in rows:
        zs = None if r["trainer"] == ZERO_SHOT else ref.get((r["dataset"], r["backbone"]))
        classes = r.get("classes") or [None] * len(r["accuracies"])
        r["collapsed"] = []
        for run_dir, seed, acc, n in zip(r["run_dirs"], r["seeds"], r["accuracies"], classes):
            why = collapse_reason(acc, n, zs)
            if why:
                r["collapsed"].append({"run_dir": run_dir, "seed": seed, "accuracy": acc, "why": why})


def _name_differences(rows):
    """``differs`` of each row: "" unless rows that agree in every grouping field but the noise
    rate ran other settings; then the config keys that tell them apart, as "KEY=value ..." (or
    ``NOT_RECORDED`` for a run whose results.json predates per-key records)."""
    families = {}
    for r in rows:
        families.setdefault(tuple(r.get(k) for k in GROUP_KEYS if k != "noise_rate"), []).append(r)
    for fam in families.values():
        for r in fam:
            r["differs"], r["differs_keys"] = "", []
        if len({r["settings_digest"] for r in fam}) < 2:
            continue
        known = [r for r in fam if isinstance(r.get("config"), dict)]
        sections = {s for r in known for s in r.get("config_sections") or ()}
        ignore = set(ignored_keys(*[r["config"] for r in known], sections=sections)) | {"DATASET.NOISE.RATE"}
        keys = sorted({k for r in known for k in r["config"]} - ignore)

        defaults = known_defaults()

        def value(r, k):  # a key its record lacks: what it stood at (ptnl.runs.identity.baseline)
            return show_value(r["config"][k] if k in r["config"] else baseline(k, r.get("config_defaults"), defaults))
        varying = [k for k in keys if len({value(r, k) for r in known}) > 1]
        for r in known:
            r["differs_keys"] = varying
            r["differs"] = " ".join("{}={}".format(k, value(r, k)) for k in varying)
        rates_known = {r["noise_rate"] for r in known}
        for r in fam:
            if r not in known and r["noise_rate"] in rates_known:
                r["differs"] = NOT_RECORDED
