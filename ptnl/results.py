"""Run records: the one writer of ``results.json`` / ``noise.json`` and the config digest, and
the one reader: runs -> tables (mean ± std over seeds) and plots (``python -m ptnl.results``)."""
import ast
import csv
import hashlib
import io
import json
import os
import os.path as osp
import re
import sys
import time

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
# A run's identity: the settings that make two runs "the same experiment but for the seed".
CORE_KEYS = ("dataset", "trainer", "backbone", "noise_type", "noise_mode", "noise_rate", "loss", "num_shots",
             "n_ctx")
# The remaining settings: prompt shape, GCE's q, and the VARIANT folder level of main.sh (settings
# passed as trailing KEY VALUE pairs). Tables show them only where they differ between rows.
OTHER_KEYS = ("csc", "ctp", "ctx_init", "gce_q", "variant")
GROUP_KEYS = CORE_KEYS + OTHER_KEYS
# What a log-only run must tell for it to be placed; the ones it does not are reported as unknown.
IDENTITY_KEYS = ("dataset", "trainer", "backbone", "noise_type", "noise_mode", "noise_rate", "loss", "num_shots",
                 "seed")
SEED_FREE_TRAINERS = ("ZeroshotCLIP",)  # nothing is trained: one seed is the whole story
LOSS_FREE_TRAINERS = ("LinearProbe", "ZeroshotCLIP")  # TRAINER.PTNL.LOSS is not used

END_LINES = ("Finish training", "Finished training")  # Dassl >= 0.6.1, older Dassl
ACCURACY_RE = re.compile(r"\* accuracy: ([\.\deE+-]+)%")  # the regex of CoOp's parse_test_res.py
EPOCH_RE = re.compile(r"epoch \[(\d+)/(\d+)\]")
LOG_RE = re.compile(r"^log\.txt(-.+)?$")  # Dassl writes log.txt-<time> when log.txt exists (a resume)
SEED_DIR_RE = re.compile(r"^seed(-?\d+)$")
SETTING_DIR_RE = re.compile(r"^shots(\d+)_nctx(\d+)_csc(.+?)_ctp(.+)$")
NOISE_DIR_RE = re.compile(r"^([a-z]+)-([a-z]+)-(\d+(?:\.\d+)?)$")
STD_NAMES = {0: "population std (ddof=0, numpy's default, as CoOp's parse_test_res.py)",
             1: "sample std (ddof=1)"}


def _value(text):
    """A config value as printed by yacs / a path component, back to a Python value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _log_files(run_dir):
    """log.txt, then the logs of resumed sessions (log.txt-YYYY-MM-DD-HH-MM-SS) in time order."""
    names = [n for n in os.listdir(run_dir) if LOG_RE.match(n) and osp.isfile(osp.join(run_dir, n))]
    return [osp.join(run_dir, n) for n in sorted(names, key=lambda n: (n != "log.txt", n))]


def _config_dump(lines):
    """The config tree a CoOp/PTNL train.py prints after '** Config **', as {"DATASET.NAME": value}."""
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "** Config **")
    except StopIteration:
        return {}
    out, path = {}, []
    for ln in lines[start + 1:]:
        ln = ln.rstrip("\n")
        if not path and set(ln.strip()) <= {"*"}:
            continue
        m = re.match(r"^( *)([A-Za-z0-9_]+):(?: (.*))?$", ln)
        if not m:
            break
        depth = len(m.group(1)) // 2
        path = path[:depth] + [m.group(2)]
        if m.group(3) is not None:
            out[".".join(path)] = _value(m.group(3).strip())
    return out


def parse_log(run_dir):
    """What the CoOp-style logs of a run folder say: the end-of-training line (either Dassl's
    wording), the last ``* accuracy: X%`` after it, the last epoch logged and the printed config."""
    info = {"finished": False, "end_line": None, "accuracy": None, "log": None, "last_epoch": None, "config": {},
            "logs": _log_files(run_dir)}
    for path in info["logs"]:
        with open(path, errors="replace") as f:
            lines = f.readlines()
        info["config"] = info["config"] or _config_dump(lines)
        for ln in lines:
            m = EPOCH_RE.search(ln)
            if m:
                info["last_epoch"] = (int(m.group(1)), int(m.group(2)))
        ends = [i for i, ln in enumerate(lines) if ln.strip() in END_LINES]
        if ends:
            accs = [m.group(1) for ln in lines[ends[-1] + 1:] for m in [ACCURACY_RE.search(ln)] if m]
            info.update(finished=True, end_line=lines[ends[-1]].strip(), log=path,
                        accuracy=float(accs[-1]) if accs else None)
    return info


def parse_run_path(run_dir):
    """Fields of main.sh's layout, read from the end of the folder name:
    ``<dataset>/<TRAINER>/<backbone>/<type>-<mode>-<rate>/<loss>/[<variant>/]shots<K>_nctx<N>_csc<C>_ctp<P>/seed<S>``.
    Whatever does not fit the layout is left out."""
    parts = osp.normpath(osp.abspath(run_dir)).split(os.sep)
    out = {}
    m = SEED_DIR_RE.match(parts[-1])
    if not m:
        return out
    out["seed"] = int(m.group(1))
    m = SETTING_DIR_RE.match(parts[-2]) if len(parts) > 1 else None
    if not m:
        return out
    out.update(num_shots=int(m.group(1)), n_ctx=int(m.group(2)), csc=_value(m.group(3)), ctp=m.group(4))
    setting = len(parts) - 2
    for i in range(setting - 2, 2, -1):  # the noise folder: dataset, trainer, backbone above; loss below
        m = NOISE_DIR_RE.match(parts[i])
        if m:
            out.update(dataset=parts[i - 3], trainer=parts[i - 2], backbone=parts[i - 1], noise_type=m.group(1),
                       noise_mode=m.group(2), noise_rate=float(m.group(3)), loss=parts[i + 1],
                       variant="/".join(parts[i + 2:setting]) or None)
            break
    return out


def _setting_dir(run_dir):
    """The folder of a run's settings (its seeds' parent) in main.sh's layout, else None."""
    run_dir = osp.normpath(osp.abspath(run_dir))
    return osp.dirname(run_dir) if SEED_DIR_RE.match(osp.basename(run_dir)) else None


def run_status(run_dir):
    """("done", None) with results.json; ("log", info) for a log-only run that finished and
    tested (a CoOp/Dassl run); ("incomplete", info) otherwise; (None, None) for no run at all."""
    if osp.isfile(osp.join(run_dir, RESULTS_FILE)):
        return "done", None
    if not _log_files(run_dir):
        return None, None
    info = parse_log(run_dir)
    return ("log" if info["finished"] and info["accuracy"] is not None else "incomplete"), info


def find_runs(dirs):
    """Every run folder under ``dirs``, as (finished, incomplete) lists of folders. Finished: a
    folder holding ``results.json``, or a CoOp-style ``log.txt`` that reached the end of training
    and printed a test accuracy after it. Incomplete: a folder with a log but neither."""
    done, incomplete, seen = [], [], set()
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if RESULTS_FILE not in filenames and not any(LOG_RE.match(n) for n in filenames):
                continue
            dirnames[:] = []  # a run folder: its sub-folders are its checkpoints
            real = osp.realpath(dirpath)
            if real in seen:
                continue
            seen.add(real)
            status, _ = run_status(dirpath)
            if status in ("done", "log"):
                done.append(dirpath)
            elif status == "incomplete":
                incomplete.append(dirpath)
    return sorted(done), sorted(incomplete)


def _fields_from_config(conf):
    """Grouping fields from a printed config (PTNL's keys, or CoOp's TRAINER.<NAME>.* ones)."""
    out = {}
    pairs = {"dataset": "DATASET.NAME", "trainer": "TRAINER.NAME", "backbone": "MODEL.BACKBONE.NAME",
             "num_shots": "DATASET.NUM_SHOTS", "noise_type": "DATASET.NOISE.TYPE",
             "noise_mode": "DATASET.NOISE.MODE", "noise_rate": "DATASET.NOISE.RATE", "loss": "TRAINER.PTNL.LOSS"}
    for field, key in pairs.items():
        if conf.get(key) not in (None, ""):
            out[field] = conf[key]
    if isinstance(conf.get("SEED"), int) and conf["SEED"] >= 0:
        out["seed"] = conf["SEED"]
    trainer = str(out.get("trainer", "")).upper()
    for field, key in (("n_ctx", "N_CTX"), ("csc", "CSC"), ("ctp", "CLASS_TOKEN_POSITION"),
                       ("ctx_init", "CTX_INIT")):
        for prefix in ("TRAINER.{}.".format(trainer), "TRAINER.PTNL."):
            if prefix + key in conf:
                out[field] = conf[prefix + key]
                break
    if out.get("loss") == "gce" and "TRAINER.PTNL.GCE_Q" in conf:
        out["gce_q"] = conf["TRAINER.PTNL.GCE_Q"]
    return out


def _log_record(run_dir, info):
    """A finished log-only run: fields from its printed config, else from its folder names."""
    from_path = parse_run_path(run_dir)
    from_config = _fields_from_config(info["config"])
    r = {k: None for k in GROUP_KEYS + ("seed",)}
    for k in r:
        r[k] = from_config.get(k, from_path.get(k))
    r["variant"] = from_path.get("variant")
    r.update(accuracy=info["accuracy"], source="log", end_line=info["end_line"], log=info["log"],
             unknown=[k for k in IDENTITY_KEYS if r[k] is None])
    return r


def load_run(run_dir):
    """One finished run as a flat record: ``results.json`` when present, else what its CoOp-style
    log says (``source`` tells which; ``unknown`` lists the identity fields a log did not give)."""
    path = osp.join(run_dir, RESULTS_FILE)
    if osp.isfile(path):
        with open(path) as f:
            r = json.load(f)
        if not isinstance(r, dict) or not isinstance(r.get("accuracy"), (int, float)):
            raise ValueError("{} has no numeric 'accuracy'".format(path))
        noise = r.get("noise") or {}
        r["noise_type"], r["noise_mode"], r["noise_rate"] = noise.get("type"), noise.get("mode"), noise.get("rate")
        prompt = r.get("prompt") or {}
        r["n_ctx"], r["csc"] = prompt.get("n_ctx"), prompt.get("csc")
        r["ctp"], r["ctx_init"] = prompt.get("class_token_position"), prompt.get("ctx_init")
        r.setdefault("gce_q", None)
        r["variant"] = parse_run_path(run_dir).get("variant")
        r["source"], r["unknown"] = RESULTS_FILE, []
    else:
        status, info = run_status(run_dir)
        if status != "log":
            raise ValueError("{}: not a finished run ({})".format(run_dir, incomplete_run(run_dir, info)["reason"]))
        r = _log_record(run_dir, info)
    r["run_dir"] = run_dir
    return r


def _ago(seconds):
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "{}{}".format(seconds // size, unit)
    return "{}s".format(seconds)


def incomplete_run(run_dir, info=None, reason=None):
    """An unfinished (or unreadable) run: where it is, its seed and settings when they can be
    told, and why it does not count."""
    if info is None and reason is None:
        info = parse_log(run_dir) if _log_files(run_dir) else None
    r = {k: None for k in GROUP_KEYS + ("seed",)}
    r.update(parse_run_path(run_dir))
    if info:
        r.update(_fields_from_config(info["config"]))
    if reason is None:
        if info and info["finished"]:
            reason = "'{}' in {} but no '* accuracy:' line after it (the test crashed, or TEST.NO_TEST)".format(
                info["end_line"], osp.basename(info["log"]))
        else:
            reason = "no results.json and no end-of-training line ({}): running, interrupted or crashed".format(
                " / ".join(END_LINES))
            if info and info["last_epoch"]:
                reason += "; last epoch logged {}/{}".format(*info["last_epoch"])
            if info and info["logs"]:
                reason += "; log last written {} ago".format(_ago(time.time() - osp.getmtime(info["logs"][-1])))
    r.update(run_dir=run_dir, reason=reason)
    return r


# ----------------------------------------------------------------------------- aggregating
def _sort_key(values):
    """Numbers numerically, then strings, then unknowns."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (2, 0, "") if v is None else (1, 0, str(v))
                 for v in values)


def _seed_key(seed):
    return _sort_key([seed])


def aggregate(records, incomplete=(), ddof=0):
    """Group runs by everything but the seed; per group the mean and std of the test accuracy
    (``ddof=0``: population std, numpy's default, as CoOp's parse_test_res.py; ``ddof=1``: sample
    std, NaN for one seed), the number of seeds and which they are.

    Missing seeds: a group is expected to have every seed found in any group of the same dataset
    and backbone (the same sweep), finished or not; ``missing`` lists the ones it lacks and
    ``incomplete`` the unfinished runs in its own settings folder (never averaged in)."""
    groups = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    by_setting = {}
    for key, runs in groups.items():
        for r in runs:
            if _setting_dir(r["run_dir"]):
                by_setting.setdefault(_setting_dir(r["run_dir"]), key)
    attached = {}
    for inc in incomplete:
        key = by_setting.get(_setting_dir(inc["run_dir"]))
        if key is not None:
            attached.setdefault(key, []).append(inc)
    sweep_seeds = {}
    for key, runs in groups.items():
        k = dict(zip(GROUP_KEYS, key))
        if k["trainer"] in SEED_FREE_TRAINERS:
            continue
        seeds = sweep_seeds.setdefault((k["dataset"], k["backbone"]), set())
        seeds.update(r.get("seed") for r in runs + attached.get(key, []) if r.get("seed") is not None)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        k = dict(zip(GROUP_KEYS, key))
        runs = sorted(runs, key=lambda r: _seed_key(r.get("seed")))
        accs = np.array([r["accuracy"] for r in runs], dtype=float)
        seeds = [r.get("seed") for r in runs]
        expected = set() if k["trainer"] in SEED_FREE_TRAINERS else sweep_seeds.get((k["dataset"], k["backbone"]),
                                                                                       set())
        row = dict(k, mean=float(accs.mean()),
                   std=float(accs.std(ddof=ddof)) if len(accs) > ddof else float("nan"), ddof=ddof,
                   n=len(runs), seeds=seeds, accuracies=accs.tolist(),
                   missing=sorted(expected - set(seeds), key=_seed_key),
                   duplicates=sorted({s for s in seeds if seeds.count(s) > 1}, key=_seed_key),
                   incomplete=sorted(attached.get(key, []), key=lambda r: _seed_key(r.get("seed"))),
                   from_log=[r for r in runs if r.get("source") == "log"],
                   run_dirs=[r["run_dir"] for r in runs])
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- tables
TABLE_FORMATS = {"plain": "simple", "markdown": "github"}


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
    return " ".join("{}={}".format(k, "''" if r.get(k) == "" else r.get(k)) for k in keys if r.get(k) is not None)


def _mean_std(r):
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


def _tabulate(headers, body, fmt):
    from tabulate import tabulate
    return tabulate(body, headers=headers, tablefmt=TABLE_FORMATS.get(fmt, fmt), disable_numparse=True)


def _csv_stats(r):
    return ["{:.4f}".format(r["mean"]), "" if np.isnan(r["std"]) else "{:.4f}".format(r["std"]), r["n"],
            " ".join(_show(s) for s in r["seeds"]), " ".join(_show(s) for s in r["missing"])]


def format_table(rows, fmt="plain"):
    """One row per group: its settings, mean ± std of test accuracy, and the seeds
    (``fmt``: plain | markdown | csv; csv has one column per setting and plain numbers)."""
    if fmt == "csv":
        std = "std_sample" if rows and rows[0]["ddof"] == 1 else "std_population"
        headers = list(GROUP_KEYS) + ["mean", std, "n", "seeds", "missing_seeds", "source"]
        return _csv(headers, [[_show(r[k]) for k in GROUP_KEYS] + _csv_stats(r) +
                              ["log" if r["from_log"] else RESULTS_FILE] for r in rows])
    extra = _varying(rows)
    headers = ["dataset", "trainer", "backbone", "noise", "rate", "loss", "shots", "n_ctx"] + \
        (["settings"] if extra else []) + ["accuracy (mean ± std)", "seeds"]
    body = [[_show(r["dataset"]), _show(r["trainer"]), _show_backbone(r["backbone"]),
             "{}-{}".format(r["noise_type"], r["noise_mode"]), _show(r["noise_rate"]), _show(r["loss"]),
             _show(r["num_shots"]), _show(r["n_ctx"])] + ([_other_settings(r, extra)] if extra else []) +
            [_mean_std(r), _seeds_cell(r)] for r in rows]
    return _tabulate(headers, body, fmt)


def format_pivot(rows, fmt="plain"):
    """One row per setting, one column per noise rate: mean ± std (number of seeds)."""
    rates = sorted({r["noise_rate"] for r in rows}, key=lambda v: _sort_key([v]))
    keys = [k for k in GROUP_KEYS if k != "noise_rate"]
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
    headers = ["dataset", "trainer", "backbone", "noise", "loss", "shots", "n_ctx"] + \
        (["settings"] if extra else []) + ["rate {}".format(_show(rate)) for rate in rates]

    def cell(r):
        n = "{} of {}".format(r["n"], r["n"] + len(r["missing"])) if r["missing"] else str(r["n"])
        return "{} ({}){}".format(_mean_std(r), n, " †" if r["from_log"] else "")

    body = []
    for key, cells in ordered:
        k = dict(zip(keys, key))
        body.append([_show(k["dataset"]), _show(k["trainer"]), _show_backbone(k["backbone"]),
                     "{}-{}".format(k["noise_type"], k["noise_mode"]), _show(k["loss"]), _show(k["num_shots"]),
                     _show(k["n_ctx"])] + ([_other_settings(k, extra)] if extra else []) +
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
    return " ".join(parts)


def format_notes(rows, incomplete=(), ddof=0):
    """The footer: which std, runs read from logs, missing and duplicate seeds, incomplete runs."""
    notes = ["accuracy: test accuracy (%), mean ± {} over seeds; the count is the number of seeds averaged".format(
        STD_NAMES.get(ddof, "std (ddof={})".format(ddof)))]
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


# ----------------------------------------------------------------------------- plots
def _line_label(k, varying, losses_of):
    parts = [_show(k["trainer"])]
    if k["trainer"] not in LOSS_FREE_TRAINERS or len(losses_of.get(k["trainer"], ())) > 1:
        parts.append(_show(k["loss"]))
    for key in varying:
        if key in ("trainer", "loss"):
            continue
        v = k[key]
        if v is None:
            continue
        parts.append({"backbone": _show_backbone(v), "num_shots": "{} shots".format(v),
                      "noise_type": "{}".format(v), "noise_mode": "{}".format(v)}.get(key, "{}={}".format(key, v)))
    return " ".join(parts)


def plot(rows, path, title=None):
    """Accuracy against noise rate: one panel per dataset, one line per trainer × loss (and any
    other setting that differs), a band of ± std; points of groups with missing seeds drawn open.
    Agg backend, no pyplot state; the PNG is written atomically. Returns a one-line description."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    rows = [r for r in rows if isinstance(r["noise_rate"], (int, float))]
    if not rows:
        raise ValueError("nothing to plot: no finished run with a known noise rate")
    ddof = rows[0]["ddof"]
    datasets = sorted({r["dataset"] for r in rows}, key=lambda v: _sort_key([v]))
    line_keys = [k for k in GROUP_KEYS if k not in ("dataset", "noise_rate")]
    varying = _varying(rows, line_keys)
    losses_of = {}
    for r in rows:
        losses_of.setdefault(r["trainer"], set()).add(r["loss"])
    ncols = min(3, len(datasets))
    nrows = (len(datasets) + ncols - 1) // ncols
    fig = Figure(figsize=(5.6 * ncols, 4.2 * nrows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    any_open, nlines = False, 0
    for i, ds in enumerate(datasets):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        mine = [r for r in rows if r["dataset"] == ds]
        lines = {}
        for r in mine:
            lines.setdefault(tuple(r[k] for k in line_keys), []).append(r)
        for key, pts in sorted(lines.items(), key=lambda kv: _sort_key(kv[0])):
            pts.sort(key=lambda r: r["noise_rate"])
            x = np.array([p["noise_rate"] for p in pts], dtype=float)
            y = np.array([p["mean"] for p in pts])
            s = np.nan_to_num(np.array([p["std"] for p in pts]))
            (ln,) = ax.plot(x, y, marker="o", markersize=4, label=_line_label(dict(zip(line_keys, key)), varying,
                                                                              losses_of))
            ax.fill_between(x, y - s, y + s, color=ln.get_color(), alpha=0.18, linewidth=0)
            short = [p for p in pts if p["missing"]]
            if short:
                any_open = True
                ax.plot([p["noise_rate"] for p in short], [p["mean"] for p in short], linestyle="none", marker="o",
                        markersize=7, markerfacecolor="white", markeredgecolor=ln.get_color())
            nlines += 1
        same = [_show_backbone(mine[0]["backbone"]) if len({r["backbone"] for r in mine}) == 1 else None,
                "{} shots".format(mine[0]["num_shots"]) if len({r["num_shots"] for r in mine}) == 1 else None,
                "{}-{}".format(mine[0]["noise_type"], mine[0]["noise_mode"])
                if len({(r["noise_type"], r["noise_mode"]) for r in mine}) == 1 else None]
        sub = ", ".join(p for p in same if p)
        ax.set_title("{}{}".format(ds, "\n" + sub if sub else ""), fontsize=10)
        ax.set_xlabel("noise rate")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(sorted({r["noise_rate"] for r in mine}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    caption = title or "Test accuracy against noise rate: mean over seeds, band ± {} std".format(
        "population" if ddof == 0 else "sample")
    if any_open:
        caption += "\nopen markers: fewer seeds than other groups of the same dataset and backbone"
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"), mode="wb")
    os.chmod(path, 0o644)
    return "accuracy against noise rate, {} line(s) (trainer × loss) with a ± std band, {} panel(s): {}".format(
        nlines, len(datasets), ", ".join(_show(d) for d in datasets))


# ----------------------------------------------------------------------------- command line
def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(
        prog="python -m ptnl.results",
        description="Every run under the folders, grouped by dataset, trainer, backbone, noise, loss and the other "
                    "settings: mean ± std of test accuracy over seeds (population std by default, as CoOp's "
                    "parse_test_res.py), the seeds, and the runs that are incomplete or missing.")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--format", default="plain", choices=["plain", "markdown", "csv"],
                   help="csv: one column per setting, plain numbers; notes go to stderr")
    p.add_argument("--pivot", action="store_true", help="one column per noise rate")
    p.add_argument("--plot", metavar="FILE.png", help="also draw accuracy against noise rate (needs matplotlib)")
    p.add_argument("--std", default="population", choices=["population", "sample"],
                   help="population (ddof=0, default) or sample (ddof=1) standard deviation")
    a = p.parse_args(argv)
    ddof = 0 if a.std == "population" else 1
    for d in a.dirs:
        if not osp.isdir(d):
            print("not a folder: {}".format(d), file=sys.stderr)
    done, unfinished = find_runs(a.dirs)
    records, incomplete = [], []
    for d in done:
        try:
            records.append(load_run(d))
        except (OSError, ValueError) as e:
            incomplete.append(incomplete_run(d, reason="unreadable: {}".format(e)))
    incomplete += [incomplete_run(d) for d in unfinished]
    if not records and not incomplete:
        print("No runs found under {}".format(", ".join(a.dirs)))
        return 1
    rows = aggregate(records, incomplete, ddof=ddof)
    notes_to = sys.stderr if a.format == "csv" else sys.stdout
    if rows:
        print(format_pivot(rows, a.format) if a.pivot else format_table(rows, a.format))
    else:
        print("No finished runs under {}".format(", ".join(a.dirs)), file=notes_to)
    notes = format_notes(rows, incomplete, ddof)
    if a.format == "markdown":
        notes = ["- " + n if not n.startswith("    ") else "    - " + n.strip() for n in notes]
    print("", file=notes_to)
    print("\n".join(notes), file=notes_to)
    if a.plot:
        try:
            described = plot(rows, a.plot)
        except ImportError:
            print("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')", file=sys.stderr)
            return 2
        except ValueError as e:
            print("no plot: {}".format(e), file=sys.stderr)
            return 2
        print("plot: {} ({})".format(a.plot, described), file=notes_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
