"""Per-epoch curves from the runs' training diagnostics (``results.json``'s ``epochs``, else
``epochs.json``), averaged over seeds: ``gradients`` (mean per-sample gradient norm of clean and of
noisy samples, runs with ``TRAINER.PTNL.ANALYSIS True``) and ``memorisation`` (accuracy of the noisy
samples against their given and their true labels, and of the clean samples)."""
import json
import os.path as osp

import numpy as np

from ptnl.report.aggregate import _sort_key
from ptnl.report.style import finish, line_style, new_figure
from ptnl.report.tables import _show, _show_backbone, _varying, figure_caption, loss_label, show_dataset
from ptnl.runs.files import DIAG_FILE
from ptnl.runs.read import GROUP_KEYS

EPOCH = "epoch"


def _integer_locator():
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


def epochs_of(record):
    """A run's per-epoch records: ``results.json``'s ``epochs``, else its ``epochs.json``, else []."""
    eps = record.get("epochs")
    if eps:
        return eps
    path = osp.join(record.get("run_dir") or "", DIAG_FILE)
    if osp.isfile(path):
        try:
            with open(path) as f:
                eps = json.load(f)
        except (OSError, ValueError):
            return []
        return eps if isinstance(eps, list) else []
    return []


def has_metric(record, metric):
    return any(isinstance(e, dict) and isinstance(e.get(metric), (int, float)) for e in epochs_of(record))


def curve_groups(records, metrics):
    """Runs with every one of ``metrics`` in some epoch, grouped by everything but the seed:
    {group key: [records]} (key: GROUP_KEYS values, then the settings digest)."""
    groups = {}
    for r in records:
        if all(has_metric(r, m) for m in metrics):
            groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS) + (r.get("settings_digest"),), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: _sort_key(kv[0])))


def mean_curve(runs, metric):
    """(epochs, mean over seeds, std over seeds) of one metric; epochs where no seed has it are left out."""
    by_epoch = {}
    for r in runs:
        for e in epochs_of(r):
            v = e.get(metric)
            if isinstance(v, (int, float)):
                by_epoch.setdefault(int(e["epoch"]), []).append(float(v))
    xs = sorted(by_epoch)
    return (np.array(xs, dtype=float), np.array([np.mean(by_epoch[x]) for x in xs]),
            np.array([np.std(by_epoch[x]) for x in xs]))


def _title(k, keys):
    names = {"backbone": _show_backbone, "noise_rate": "noise {}".format, "num_shots": "{} shots".format,
             "n_ctx": "n_ctx {}".format}
    shown = {"dataset": lambda v: show_dataset(dict(k, dataset=v)), "trainer": _show, "loss": _show}
    return " · ".join(names.get(key, shown.get(key, lambda v, key=key: "{}={}".format(key, v)))(k[key])
                      for key in keys if k.get(key) is not None)


def _fields(key, runs):
    """A group's fields (GROUP_KEYS) with what labels need of its runs: loss options, pocket world."""
    return dict(zip(GROUP_KEYS, key), loss_options=runs[0].get("loss_options"),
                pocket_world=runs[0].get("pocket_world"))


def _panels(groups, by):
    """Groups gathered into panels by the fields ``by``: {panel key: [(fields, runs)]}."""
    panels = {}
    for key, runs in groups.items():
        k = _fields(key, runs)
        panels.setdefault(tuple(k[f] for f in by), []).append((k, runs))
    return panels


def _differing(fields, skip):
    """The fields (other than ``skip``) whose values differ between ``fields`` (a list of dicts)."""
    return [f for f in GROUP_KEYS if f not in skip and len({repr(k.get(f)) for k in fields}) > 1]


def gradients_figure(records):
    """Mean per-sample gradient norm of clean (solid) and noisy (dashed) samples per epoch, a panel
    per model configuration (trainer × dataset × backbone × noise), a pair of lines per loss."""
    groups = curve_groups(records, ("grad_norm_clean", "grad_norm_noisy"))
    by = ("dataset", "trainer", "backbone", "noise_type", "noise_mode", "noise_rate")
    panels = _panels(groups, by)
    fig, axes = new_figure(len(panels))
    handles, nlines = [], 0
    for ax, (pkey, members) in zip(axes, panels.items()):
        k0 = members[0][0]
        lows, highs = [], []
        varying = _differing([k for k, _ in members], by + ("loss", "gce_q"))
        for k, runs in members:
            st = line_style(k["trainer"], k["loss"])
            extra = _title(k, varying)
            for metric, which, ls, fill in (("grad_norm_clean", "clean", "-", "full"),
                                            ("grad_norm_noisy", "noisy", "--", "none")):
                x, y, s = mean_curve(runs, metric)
                lows.append(float(np.min(y)) if len(y) else 0.0)
                highs.append(float(np.max(y)) if len(y) else 0.0)
                label = " ".join(p for p in (_show(k["trainer"]), loss_label(k, none=""), which + " samples", extra)
                                 if p)
                (ln,) = ax.plot(x, y, color=st["color"], marker=st["marker"], linestyle=ls, fillstyle=fill,
                                label=label, markevery=max(1, len(x) // 10))
                ax.fill_between(x, y - s, y + s, color=st["color"], alpha=0.12, linewidth=0)
                handles.append((ln, label))
                nlines += 1
        if min(lows) > 0 and max(highs) / min(lows) > 10:  # norms over orders of magnitude
            from matplotlib.ticker import NullFormatter
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title("{}\n{}".format(_show(k0["trainer"]), _title(k0, ["dataset", "backbone", "noise_rate"])))
        ax.set_xlabel(EPOCH)
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_ylabel("mean per-sample gradient norm (L2)")
    finish(fig, figure_caption("Gradient norm of clean and noisy training samples per epoch (mean over seeds, band "
                               "± std)", [r for runs in groups.values() for r in runs]), handles)
    return fig, "gradient norms per epoch, {} line(s) (clean and noisy per loss), {} panel(s) (model " \
                "configuration)".format(nlines, len(panels))


MEMORISATION = (("noisy_memorised", "noisy samples → given (wrong) label", "#D55E00", "s", "--"),
                ("noisy_true", "noisy samples → true label", "#009E73", "^", "-"),
                ("clean_acc", "clean samples → their label", "#0072B2", "o", "-"))


def memorisation_figure(records):
    """Per epoch, training accuracy on the noisy samples against their given and their true labels,
    and on the clean samples: a panel per trainer × loss (× dataset, backbone, noise), three lines."""
    groups = curve_groups(records, ("noisy_memorised", "noisy_true", "clean_acc"))
    varying = _varying([dict(zip(GROUP_KEYS, key)) for key in groups],
                       [k for k in GROUP_KEYS if k not in ("trainer", "loss", "dataset", "backbone", "noise_rate")])
    fig, axes = new_figure(len(groups))
    handles, nlines = [], 0
    for ax, (key, runs) in zip(axes, groups.items()):
        k = _fields(key, runs)
        for metric, label, col, marker, ls in MEMORISATION:
            x, y, s = mean_curve(runs, metric)
            (ln,) = ax.plot(x, y, color=col, marker=marker, linestyle=ls, label=label, markevery=max(1, len(x) // 10))
            ax.fill_between(x, y - s, y + s, color=col, alpha=0.12, linewidth=0)
            handles.append((ln, label))
            nlines += 1
        ax.set_ylim(-2, 102)
        ax.set_title("{} {}{}\n{}".format(_show(k["trainer"]), loss_label(k, none=""),
                                           " · " + _title(k, varying) if _title(k, varying) else "",
                                           _title(k, ["dataset", "backbone", "noise_rate"])))
        ax.set_xlabel(EPOCH)
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_ylabel("training accuracy (%)")
    finish(fig, figure_caption("Memorisation of noisy labels per epoch (training views; mean over seeds, band ± std)",
                               [r for runs in groups.values() for r in runs]), handles, ncol=3)
    return fig, "memorisation per epoch, {} line(s), {} panel(s) (trainer × loss)".format(nlines, len(groups))
