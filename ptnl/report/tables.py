"""Tables of grouped runs (plain, markdown, csv, latex; ``--pivot``: one column per noise rate; json:
one record per setting), the line above them (``format_header``: the settings every row shares) and
the notes under them (which std, collapsed seeds, runs read from logs, missing seeds, diverged and
incomplete runs)."""
import csv
import io
import json
import math
import os.path as osp

import numpy as np

from ptnl.report.aggregate import COLLAPSE_RULE, STD_NAMES, _sort_key
from ptnl.report.latex import Stat, tabular
from ptnl.runs.files import RESULTS_FILE
from ptnl.runs.identity import result_settings
from ptnl.runs.read import GROUP_KEYS, OTHER_KEYS, POCKET_WEIGHTS, RUN_SETTINGS, loss_free

TABLE_FORMATS = {"plain": "simple", "markdown": "github"}
FORMATS = ("plain", "markdown", "csv", "latex", "json")
COLLAPSED = "‡"  # beside the mean of a group with a collapsed seed; the notes name the run
POCKET_LABEL = " (pocket world)"
NO_LOSS = "—"  # the loss cell of a trainer that TRAINER.PTNL.LOSS does not steer


def _show(v):
    return "" if v is None else str(v)


def show_dataset(r):
    """The dataset's name, "(pocket world)" after it where the runs used the pocket world's data."""
    return _show(r.get("dataset")) + (POCKET_LABEL if r.get("pocket_world") else "")


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def loss_options_shown(r):
    """"KEY=value" of each option of the row's loss that is not at its default (the loss registry's
    options and defaults as results.json's ``loss_options`` records them); None where not recorded."""
    opts = r.get("loss_options")
    if not isinstance(opts, dict):
        return None
    return ["{}={}".format(k, v.get("value")) for k, v in sorted(opts.items())
            if isinstance(v, dict) and not _same(v.get("value"), v.get("default"))]


def loss_label(r, none=NO_LOSS):
    """The loss as tables and legends show it: ``none`` for trainers TRAINER.PTNL.LOSS does not
    steer (``loss_free``: the class says ``USES_LOSS = False``), else its name and every non-default
    option ("gce (GCE_Q=0.5)")."""
    if loss_free(r.get("trainer")):
        return none
    shown = loss_options_shown(r)
    return _show(r.get("loss")) + (" ({})".format(", ".join(shown)) if shown else "")


def _show_backbone(b):
    """A weights file shows as its file name; CLIP names as they are."""
    if isinstance(b, str) and (osp.isabs(b) or osp.splitext(b)[1] in (".pt", ".pth", ".bin", ".ckpt", ".tar")):
        return osp.basename(b)
    return _show(b)


def _value(r, k):
    """A row's setting ``k`` as the settings column shows it: GCE's q is left to the loss cell
    where the run recorded its loss options (``loss_label``)."""
    if k == "gce_q" and isinstance(r.get("loss_options"), dict):
        return None
    return r.get(k)


def _varying(rows, keys=OTHER_KEYS):
    """The settings that take more than one value for one trainer and loss (n_ctx is not a
    difference between PTNL and LinearProbe, nor GCE's q one between ce and gce)."""
    seen = {}
    for r in rows:
        for k in keys:
            seen.setdefault((k, r.get("trainer"), r.get("loss")), set()).add(repr(_value(r, k)))
    return [k for k in keys if any(len(v) > 1 for (key, _, _), v in seen.items() if key == k)]


def _other_settings(r, keys):
    parts = ["{}={}".format(k, "''" if _value(r, k) == "" else _value(r, k)) for k in keys if _value(r, k) is not None]
    return " ".join(parts + ([r["differs"]] if r.get("differs") else []))


def _mark(r):
    return " " + COLLAPSED if r.get("collapsed") else ""


def _mean_std(r, mark=True):
    """mean ± std; one seed has no spread to show: "45.00 (n=1)"; ‡ after a group with a collapsed seed
    (``mark``)."""
    tail = _mark(r) if mark else ""
    if r["n"] == 1:
        return "{:.2f} (n=1){}".format(r["mean"], tail)
    std = "n/a" if np.isnan(r["std"]) else "{:.2f}".format(r["std"])
    return "{:.2f} ± {}{}".format(r["mean"], std, tail)


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
    """A LaTeX accuracy cell: mean ± std (no std for one seed, or an undefined one), ‡ after a group
    with a collapsed seed."""
    std = None if r["n"] == 1 or np.isnan(r["std"]) else r["std"]
    note = note or ("(n=1)" if r["n"] == 1 else "")
    return Stat(r["mean"], std, (note + _mark(r)).strip())


def _tabulate(headers, body, fmt):
    if fmt == "latex":
        return tabular(headers, body)
    from tabulate import tabulate
    return tabulate(body, headers=headers, tablefmt=TABLE_FORMATS.get(fmt, fmt), disable_numparse=True)


def _csv_stats(r):
    return ["{:.4f}".format(r["mean"]), "" if np.isnan(r["std"]) else "{:.4f}".format(r["std"]), r["n"],
            " ".join(_show(s) for s in r["seeds"]), " ".join(_show(s) for s in r["missing"])]


def _csv_run_settings(r):
    """The ``RUN_SETTINGS`` of a row for csv: each value, " | " between several (seeds that differ)."""
    rs = r.get("run_settings") or {}
    return [" | ".join(_show(v) for v in rs.get(k, [])) for k in RUN_SETTINGS]


def _show_setting(key, value):
    if value is None:
        return "not recorded"
    if key == "epochs":
        return "{} epoch{}".format(value, "" if value == 1 else "s")
    if key == "weights":
        return "weights {}".format(_show_backbone(value) + (" (the pocket world's)" if value == POCKET_WEIGHTS
                                                            else ""))
    return "{} {}".format(key, value)


def shared_settings(rows):
    """What every row shares of ``RUN_SETTINGS``: {"common": {setting: value}, "differ": {setting:
    [values]}, "not_recorded": [settings no row recorded]}; a setting that does not apply to any row
    (epochs of zero-shot CLIP and the linear probe alone) is left out."""
    out = {"common": {}, "differ": {}, "not_recorded": []}
    for key in RUN_SETTINGS:
        values = {}
        for r in rows:  # a row's run settings are lists (its seeds' values), a record's single values
            have = (r.get("run_settings") or {}).get(key, [])
            for v in have if isinstance(have, list) else [have]:
                values.setdefault(repr(v), v)
        if not values:
            continue
        vals = [values[k] for k in sorted(values)]
        if vals == [None]:
            out["not_recorded"].append(key)
        elif len(vals) == 1:
            out["common"][key] = vals[0]
        else:
            out["differ"][key] = vals
    return out


def figure_caption(caption, rows):
    """A figure's caption followed by ``format_header`` of the rows (or runs) it draws."""
    header = format_header(rows)
    return caption + ("\n" + header if header else "")


def format_header(rows, fmt="plain"):
    """The lines stated once above a table (and in each figure's caption): the settings every row
    shares (epochs, backbone weights, engine, randomness, precision), those that differ between
    rows, and those not recorded. ``fmt`` latex: as % comments; markdown: one paragraph."""
    sh = shared_settings(rows)
    lines = []
    if sh["common"]:
        epoch_free = "epochs" in sh["common"] and any("epochs" not in (r.get("run_settings") or {}) for r in rows)
        lines.append("Every row: " + "; ".join(
            _show_setting(k, v) + (" (trainers with an epoch loop)" if k == "epochs" and epoch_free else "")
            for k, v in sh["common"].items()))
    if sh["differ"]:
        lines.append("Rows differ in: " + "; ".join("{} ({})".format(k, ", ".join(
            "not recorded" if v is None else _show_backbone(v) if k == "weights" else str(v) for v in vals))
            for k, vals in sh["differ"].items()))
    if sh["not_recorded"]:
        lines.append("Not recorded by these runs: " + ", ".join(sh["not_recorded"]))
    if fmt == "latex":
        return "\n".join("% " + ln for ln in lines)
    if fmt == "markdown":
        return "  \n".join(lines)
    return "\n".join(lines)


def format_table(rows, fmt="plain"):
    """One row per group: its settings, mean ± std of test accuracy, and the seeds
    (``fmt``: plain | markdown | csv | latex; csv has one column per setting and plain numbers; latex
    is a booktabs tabular, ``$mean \\pm std$``, the best of each accuracy column in bold)."""
    if fmt == "csv":
        std = "std_sample" if rows and rows[0]["ddof"] == 1 else "std_population"
        headers = list(GROUP_KEYS) + ["mean", std, "n", "seeds", "missing_seeds", "source", "differs",
                                      "settings_digest", "seed_ensemble", "collapsed_seeds", "pocket_world",
                                      "loss_options"] + list(RUN_SETTINGS)
        return _csv(headers, [[_csv_cell(r, k) for k in GROUP_KEYS] + _csv_stats(r) +
                              ["log" if r["from_log"] else RESULTS_FILE, r.get("differs", ""),
                               _show(r.get("settings_digest")),
                               "" if r.get("ensemble") is None else "{:.4f}".format(r["ensemble"]),
                               " ".join(_show(c["seed"]) for c in r.get("collapsed", ())),
                               "yes" if r.get("pocket_world") else "",
                               " ".join(loss_options_shown(r) or ())] + _csv_run_settings(r) for r in rows])
    extra = _varying(rows)
    differs = any(r.get("differs") for r in rows)
    ensemble = any(r.get("ensemble") is not None for r in rows)
    partition = any(r.get("partition") for r in rows)
    headers = ["dataset", "trainer", "backbone", "noise", "rate", "loss", "shots", "n_ctx"] + \
        (["settings"] if extra or differs else []) + \
        ["accuracy (%) (mean ± std)" if fmt == "latex" else "accuracy (mean ± std)"] + \
        (["seed ensemble"] if ensemble else []) + (["noisy-set precision / recall"] if partition else []) + ["seeds"]
    body = [[show_dataset(r), _show(r["trainer"]), _show_backbone(r["backbone"]),
             "{}-{}".format(r["noise_type"], r["noise_mode"]), _show(r["noise_rate"]), loss_label(r),
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
    cell = " / ".join("—" if p[k] is None else "{:.1f}".format(p[k]) for k in ("precision", "recall"))
    return cell + " (verified)" if p.get("scored_on") else cell


def _ensemble_cell(r, fmt="plain"):
    if fmt == "latex" and r.get("ensemble") is not None:
        return Stat(r["ensemble"])
    return "—" if r.get("ensemble") is None else "{:.2f}".format(r["ensemble"])


def _csv_cell(r, k):
    """A grouping field for csv: the loss left empty for trainers it does not steer."""
    if k == "loss" and loss_free(r.get("trainer")):
        return ""
    return _show(r.get(k))


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
        headers += ["collapsed_seeds", "pocket_world"]
        body = []
        for key, cells in ordered:
            first = next(iter(cells.values()))
            line = [_csv_cell(first, k) for k in keys]
            for rt in rates:
                line += _csv_stats(cells[rt])[:3] if rt in cells else ["", "", ""]
            line += [" ".join("{}@{}".format(_show(c["seed"]), _show(rt)) for rt in rates if rt in cells
                              for c in cells[rt].get("collapsed", ())),
                     "yes" if first.get("pocket_world") else ""]
            body.append(line)
        return _csv(headers, body)
    extra = _varying(rows)
    differs = any(r.get("differs") for r in rows)
    headers = ["dataset", "trainer", "backbone", "noise", "loss", "shots", "n_ctx"] + \
        (["settings"] if extra or differs else []) + \
        ["rate {}{}".format(_show(rate), " (%)" if fmt == "latex" else "") for rate in rates]

    def cell(r):
        if fmt == "latex":
            return _stat(r, "({} of {})".format(r["n"], r["n"] + len(r["missing"])) if r["missing"] else "")
        n = "{} of {}".format(r["n"], r["n"] + len(r["missing"])) if r["missing"] else str(r["n"])
        if r["n"] == 1:
            return "{:.2f} (n={}){}{}".format(r["mean"], n, " †" if r["from_log"] else "", _mark(r))
        return "{} ({}){}{}".format(_mean_std(r, mark=False), n,
                                    " †" if r["from_log"] else "", _mark(r))

    body = []
    for key, cells in ordered:
        k = dict(next(iter(cells.values())), **dict(zip(keys, key)))
        body.append([show_dataset(k), _show(k["trainer"]), _show_backbone(k["backbone"]),
                     "{}-{}".format(k["noise_type"], k["noise_mode"]), loss_label(k), _show(k["num_shots"]),
                     _show(k["n_ctx"])] + ([_other_settings(k, extra)] if extra or differs else []) +
                    [cell(cells[rt]) if rt in cells else "" for rt in rates])
    return _tabulate(headers, body, fmt)


def _label(r):
    """A group in words, for notes."""
    parts = [show_dataset(r), _show(r.get("trainer")), _show_backbone(r.get("backbone")),
             "{}-{}-{}".format(r.get("noise_type"), r.get("noise_mode"), r.get("noise_rate"))] + \
        ([loss_label(r)] if not loss_free(r.get("trainer")) else []) + \
        ["{} shots".format(_show(r.get("num_shots")))]
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
    if any((r.get("partition") or {}).get("scored_on") for r in rows):
        notes.append("(verified): the dataset knows no true classes (Food-101N), so precision / recall count only "
                     "the items its release verified (verification label 0: noisy); — where none was verified")
    if any(r.get("ensemble") is not None for r in rows):
        notes.append("seed ensemble: accuracy of the seeds' test logits averaged (what UPL and the paper's release "
                     "report), where every seed saved test_logits.pt; — where they did not")
    collapsed = [(r, c) for r in rows for c in r.get("collapsed", ())]
    if collapsed:
        notes.append("{} collapsed seed(s), flagged and still averaged in ({}):".format(COLLAPSED, COLLAPSE_RULE))
        for r, c in collapsed:
            notes.append("    {}: {:.2f}% ({})".format(c["run_dir"], c["accuracy"], c["why"]))
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
            unfinished = {i.get("seed"): "diverged" if i.get("diverged") else "incomplete" for i in r["incomplete"]}
            notes.append("    {}: {}".format(_label(r), ", ".join(
                "seed {} ({})".format(s, unfinished.get(s, "no run found")) for s in r["missing"])))
    for r in rows:
        if r["duplicates"]:
            notes.append("seed(s) {} counted more than once in {}: {}".format(
                " ".join(_show(s) for s in r["duplicates"]), _label(r), " ".join(r["run_dirs"])))
    diverged = [i for i in incomplete if i.get("diverged")]
    if diverged:
        notes.append("diverged runs (a loss or the test accuracy not finite), not averaged in ({}):".format(
            len(diverged)))
        for inc in diverged:
            notes.append("    {}: {}".format(inc["run_dir"], inc["reason"]))
    incomplete = [i for i in incomplete if not i.get("diverged")]
    if incomplete:
        notes.append("incomplete runs, not averaged in ({}):".format(len(incomplete)))
        for inc in incomplete:
            notes.append("    {}: {}".format(inc["run_dir"], inc["reason"]))
    return notes


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def json_record(r):
    """One setting (a row of ``format_table``) as a JSON-ready dict: its settings (the grouping
    fields, the labels tables show, the run settings, the loss options, the recorded config that can
    change results), mean, std and every seed's accuracy with its run folder and collapse flag."""
    collapsed = {c["run_dir"]: c["why"] for c in r.get("collapsed", ())}
    config = r.get("config")
    rec = {k: r.get(k) for k in GROUP_KEYS}
    rec.update(
        loss=None if loss_free(r.get("trainer")) else r.get("loss"),
        dataset_label=show_dataset(r), pocket_world=bool(r.get("pocket_world")), loss_label=loss_label(r, none=None),
        loss_options=r.get("loss_options"), run_settings=r.get("run_settings") or {}, differs=r.get("differs") or "",
        settings_digest=r.get("settings_digest"),
        settings=result_settings(config) if isinstance(config, dict) else None,
        mean=_finite(r["mean"]), std=_finite(r["std"]), ddof=r["ddof"], n=r["n"],
        seeds=[{"seed": s, "accuracy": a, "run_dir": d, "collapsed": collapsed.get(d)}
               for s, a, d in zip(r["seeds"], r["accuracies"], r["run_dirs"])],
        missing_seeds=r["missing"], duplicates=r["duplicates"],
        incomplete=[{"seed": i.get("seed"), "run_dir": i["run_dir"], "reason": i["reason"]} for i in r["incomplete"]],
        source="log" if r["from_log"] else RESULTS_FILE, ensemble=r.get("ensemble"), partition=r.get("partition"))
    return rec


def format_json(rows, incomplete=(), ddof=0):
    """``--format json``: {"groups": one record per setting (``json_record``), "shared": what every
    row shares (``shared_settings``), "collapse_rule", "std", "incomplete": unfinished and diverged
    runs, "notes": the table's notes}; strict JSON (no NaN)."""
    doc = {"std": STD_NAMES.get(ddof, "std (ddof={})".format(ddof)), "ddof": ddof,
           "shared": shared_settings(rows), "collapse_rule": COLLAPSE_RULE,
           "groups": [json_record(r) for r in rows],
           "incomplete": [{"seed": i.get("seed"), "run_dir": i["run_dir"], "reason": i["reason"],
                           "diverged": bool(i.get("diverged"))} for i in incomplete],
           "notes": format_notes(rows, incomplete, ddof)}
    return json.dumps(doc, indent=1, allow_nan=False, default=str)
