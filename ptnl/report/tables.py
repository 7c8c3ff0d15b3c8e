"""Tables of grouped runs (plain, markdown, csv, latex; ``--pivot``: one column per noise rate) and
the notes under them (which std, runs read from logs, missing seeds, incomplete runs)."""
import csv
import io
import os.path as osp

import numpy as np

from ptnl.report.aggregate import STD_NAMES, _sort_key
from ptnl.report.latex import Stat, tabular
from ptnl.runs.files import RESULTS_FILE
from ptnl.runs.read import GROUP_KEYS, OTHER_KEYS

TABLE_FORMATS = {"plain": "simple", "markdown": "github"}
FORMATS = ("plain", "markdown", "csv", "latex")


def _show(v):
    return "" if v is None else str(v)


def _show_backbone(b):
    """A weights file shows as its file name; CLIP names as they are."""
    if isinstance(b, str) and (osp.isabs(b) or osp.splitext(b)[1] in (".pt", ".pth", ".bin", ".ckpt", ".tar")):
        return osp.basename(b)
    return _show(b)


def _varying(rows, keys=OTHER_KEYS):
    """The settings that take more than one value for one trainer and loss (n_ctx is not a
    difference between PTNL and LinearProbe, nor GCE's q one between ce and gce)."""
    seen = {}
    for r in rows:
        for k in keys:
            seen.setdefault((k, r.get("trainer"), r.get("loss")), set()).add(repr(r.get(k)))
    return [k for k in keys if any(len(v) > 1 for (key, _, _), v in seen.items() if key == k)]


def _other_settings(r, keys):
    parts = ["{}={}".format(k, "''" if r.get(k) == "" else r.get(k)) for k in keys if r.get(k) is not None]
    return " ".join(parts + ([r["differs"]] if r.get("differs") else []))


def _mean_std(r):
    """mean ± std; one seed has no spread to show: "45.00 (n=1)"."""
    if r["n"] == 1:
        return "{:.2f} (n=1)".format(r["mean"])
    std = "n/a" if np.isnan(r["std"]) else "{:.2f}".format(r["std"])
    return "{:.2f} ± {}".format(r["mean"], std)


def _seeds_cell(r):
    text = "{} ({})".format(r["n"], " ".join(_show(s) for s in r["seeds"]))
    if r["missing"]:
        text = text[:-1] + "; missing {})".format(" ".join(_show(s) for s in r["missing"]))
    return text + (" †" if r["from_log"] else "")


def _csv(headers, body):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    w.writerows(body)
    return buf.getvalue().rstrip("\n")


def _stat(r, note=""):
    """A LaTeX accuracy cell: mean ± std (no std for one seed, or an undefined one)."""
    std = None if r["n"] == 1 or np.isnan(r["std"]) else r["std"]
    return Stat(r["mean"], std, note or ("(n=1)" if r["n"] == 1 else ""))


def _tabulate(headers, body, fmt):
    if fmt == "latex":
        return tabular(headers, body)
    from tabulate import tabulate
    return tabulate(body, headers=headers, tablefmt=TABLE_FORMATS.get(fmt, fmt), disable_numparse=True)


def _csv_stats(r):
    return ["{:.4f}".format(r["mean"]), "" if np.isnan(r["std"]) else "{:.4f}".format(r["std"]), r["n"],
            " ".join(_show(s) for s in r["seeds"]), " ".join(_show(s) for s in r["missing"])]


def format_table(rows, fmt="plain"):
    """One row per group: its settings, mean ± std of test accuracy, and the seeds
    (``fmt``: plain | markdown | csv | latex; csv has one column per setting and plain numbers; latex
    is a booktabs tabular, ``$mean \\pm std$``, the best of each accuracy column in bold)."""
    if fmt == "csv":
        std = "std_sample" if rows and rows[0]["ddof"] == 1 else "std_population"
        headers = list(GROUP_KEYS) + ["mean", std, "n", "seeds", "missing_seeds", "source", "differs",
                                      "settings_digest", "seed_ensemble"]
        return _csv(headers, [[_show(r[k]) for k in GROUP_KEYS] + _csv_stats(r) +
                              ["log" if r["from_log"] else RESULTS_FILE, r.get("differs", ""),
                               _show(r.get("settings_digest")),
                               "" if r.get("ensemble") is None else "{:.4f}".format(r["ensemble"])] for r in rows])
    extra = _varying(rows)
    differs = any(r.get("differs") for r in rows)
    ensemble = any(r.get("ensemble") is not None for r in rows)
    partition = any(r.get("partition") for r in rows)
    headers = ["dataset", "trainer", "backbone", "noise", "rate", "loss", "shots", "n_ctx"] + \
        (["settings"] if extra or differs else []) + ["accuracy (mean ± std)"] + \
        (["seed ensemble"] if ensemble else []) + (["noisy-set precision / recall"] if partition else []) + ["seeds"]
    body = [[_show(r["dataset"]), _show(r["trainer"]), _show_backbone(r["backbone"]),
             "{}-{}".format(r["noise_type"], r["noise_mode"]), _show(r["noise_rate"]), _show(r["loss"]),
             _show(r["num_shots"]), _show(r["n_ctx"])] + ([_other_settings(r, extra)] if extra or differs else []) +
            ([_stat(r)] if fmt == "latex" else [_mean_std(r)]) +
            ([_ensemble_cell(r, fmt)] if ensemble else []) + ([_partition_cell(r)] if partition else []) +
            [_seeds_cell(r)] for r in rows]
    return _tabulate(headers, body, fmt)


def _partition_cell(r):
    """The selection method's final noisy set against the true labels (mean over seeds), in %."""
    p = r.get("partition")
    if not p:
        return "—"
    return " / ".join("—" if p[k] is None else "{:.1f}".format(p[k]) for k in ("precision", "recall"))


def _ensemble_cell(r, fmt="plain"):
    if fmt == "latex" and r.get("ensemble") is not None:
        return Stat(r["ensemble"])
    return "—" if r.get("ensemble") is None else "{:.2f}".format(r["ensemble"])


def format_pivot(rows, fmt="plain"):
    """One row per setting, one column per noise rate: mean ± std (number of seeds); ``fmt`` as
    ``format_table`` (latex: the best of each rate's column in bold)."""
    rates = sorted({r["noise_rate"] for r in rows}, key=lambda v: _sort_key([v]))
    keys = [k for k in GROUP_KEYS if k != "noise_rate"] + ["differs"]
    table = {}
    for r in rows:
        table.setdefault(tuple(r[k] for k in keys), {})[r["noise_rate"]] = r
    ordered = sorted(table.items(), key=lambda kv: _sort_key(kv[0]))
    if fmt == "csv":
        headers = keys + [h.format(rate) for rate in rates for h in ("rate {} mean", "rate {} std", "rate {} n")]
        body = []
        for key, cells in ordered:
            line = [_show(v) for v in key]
            for rt in rates:
                line += _csv_stats(cells[rt])[:3] if rt in cells else ["", "", ""]
            body.append(line)
        return _csv(headers, body)
    extra = _varying(rows)
    differs = any(r.get("differs") for r in rows)
    headers = ["dataset", "trainer", "backbone", "noise", "loss", "shots", "n_ctx"] + \
        (["settings"] if extra or differs else []) + ["rate {}".format(_show(rate)) for rate in rates]

    def cell(r):
        if fmt == "latex":
            return _stat(r, "({} of {})".format(r["n"], r["n"] + len(r["missing"])) if r["missing"] else "")
        n = "{} of {}".format(r["n"], r["n"] + len(r["missing"])) if r["missing"] else str(r["n"])
        if r["n"] == 1:
            return "{:.2f} (n={}){}".format(r["mean"], n, " †" if r["from_log"] else "")
        return "{} ({}){}".format(_mean_std(r), n, " †" if r["from_log"] else "")

    body = []
    for key, cells in ordered:
        k = dict(zip(keys, key))
        body.append([_show(k["dataset"]), _show(k["trainer"]), _show_backbone(k["backbone"]),
                     "{}-{}".format(k["noise_type"], k["noise_mode"]), _show(k["loss"]), _show(k["num_shots"]),
                     _show(k["n_ctx"])] + ([_other_settings(k, extra)] if extra or differs else []) +
                    [cell(cells[rt]) if rt in cells else "" for rt in rates])
    return _tabulate(headers, body, fmt)


def _label(r):
    """A group in words, for notes."""
    parts = [_show(r.get("dataset")), _show(r.get("trainer")), _show_backbone(r.get("backbone")),
             "{}-{}-{}".format(r.get("noise_type"), r.get("noise_mode"), r.get("noise_rate")), _show(r.get("loss")),
             "{} shots".format(_show(r.get("num_shots")))]
    if r.get("n_ctx") is not None:
        parts.append("n_ctx {}".format(r["n_ctx"]))
    if r.get("variant"):
        parts.append(r["variant"])
    if r.get("differs"):
        parts.append("({})".format(r["differs"]))
    return " ".join(parts)


def _collisions(rows):
    """Rows that would read the same but for ``differs``, in groups of two or more."""
    same = {}
    for r in rows:
        same.setdefault(tuple(repr(r.get(k)) for k in GROUP_KEYS), []).append(r)
    return [v for v in same.values() if len(v) > 1]


def format_notes(rows, incomplete=(), ddof=0):
    """The footer: which std, runs read from logs, missing and duplicate seeds, incomplete runs."""
    notes = ["accuracy: test accuracy (%), mean ± {} over seeds; the count is the number of seeds averaged".format(
        STD_NAMES.get(ddof, "std (ddof={})".format(ddof)))]
    if any(r.get("partition") for r in rows):
        notes.append("noisy-set precision / recall: the sample-selection method's final noisy set U against the "
                     "true labels, mean over seeds (%): the share of U truly noisy, the share of the noisy samples "
                     "in U; a random U of the same size has precision equal to the noise rate")
    if any(r.get("ensemble") is not None for r in rows):
        notes.append("seed ensemble: accuracy of the seeds' test logits averaged (what UPL and the paper's release "
                     "report), where every seed saved test_logits.pt; — where they did not")
    apart = [r for r in rows if r.get("differs")]
    if apart:
        notes.append("not averaged together: rows that agree in the columns above but ran other settings "
                     "(their results.json configs differ in {}); each shows its values under settings".format(
                         ", ".join(sorted({k for r in apart for k in r.get("differs_keys", ())})) or
                         "keys not recorded"))
        for fam in _collisions(apart):
            notes.append("    {}: {}".format(_label(fam[0]), " vs ".join(r["differs"] for r in fam)))
    logged = [r for row in rows for r in row["from_log"]]
    if logged:
        notes.append("† {} run(s) read from a CoOp-style log (no results.json; the last '* accuracy:' after the "
                     "end-of-training line):".format(len(logged)))
        for r in logged:
            notes.append("    {} ('{}'{}){}".format(r["run_dir"], r["end_line"],
                                                  ", older Dassl" if r["end_line"] == "Finished training" else "",
                                                  "; unknown: " + ", ".join(r["unknown"]) if r["unknown"] else ""))
    short = [r for r in rows if r["missing"]]
    if short:
        notes.append("missing seeds (found in other groups of the same dataset and backbone):")
        for r in short:
            unfinished = {i.get("seed") for i in r["incomplete"]}
            notes.append("    {}: {}".format(_label(r), ", ".join(
                "seed {} ({})".format(s, "incomplete" if s in unfinished else "no run found") for s in r["missing"])))
    for r in rows:
        if r["duplicates"]:
            notes.append("seed(s) {} counted more than once in {}: {}".format(
                " ".join(_show(s) for s in r["duplicates"]), _label(r), " ".join(r["run_dirs"])))
    if incomplete:
        notes.append("incomplete runs, not averaged in ({}):".format(len(incomplete)))
        for inc in incomplete:
            notes.append("    {}: {}".format(inc["run_dir"], inc["reason"]))
    return notes
