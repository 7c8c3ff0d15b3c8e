"""``confusion``: the test confusion matrix (``confusion_matrix.json``, written by runs with
``TRAINER.PTNL.ANALYSIS True``) as a heatmap with the class names on the axes, a panel per group of
seeds (counts summed over the seeds, each true class's row as % of its images) or per run."""
import json
import os.path as osp

import numpy as np

from ptnl.report.aggregate import _sort_key
from ptnl.report.style import PANEL_W, finish, new_figure
from ptnl.report.tables import _show, _show_backbone, figure_caption, loss_label, show_dataset
from ptnl.runs.files import CONFUSION_FILE
from ptnl.runs.read import GROUP_KEYS


def load_confusion(record):
    """(class names, counts as an array rows=true, cols=predicted) of a run, or None."""
    path = osp.join(record.get("run_dir") or "", CONFUSION_FILE)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            cm = json.load(f)
        return list(cm["classnames"]), np.asarray(cm["rows_true_cols_pred"], dtype=float)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def confusion_panels(records, per_run=False):
    """[(title, class names, row-normalised % matrix, seeds)]: seeds summed per group (per run
    with ``per_run``); runs whose class names differ are never summed."""
    groups = {}
    for r in records:
        cm = load_confusion(r)
        if cm is None:
            continue
        key = tuple(r.get(k) for k in GROUP_KEYS) + (r.get("settings_digest"), tuple(cm[0]))
        if per_run:
            key += (r.get("seed"), r["run_dir"])
        groups.setdefault(key, []).append((r, cm[1]))
    out = []
    for key, runs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0][:len(GROUP_KEYS)])):
        k = dict(zip(GROUP_KEYS, key))
        total = sum(m for _, m in runs)
        rows = total.sum(axis=1, keepdims=True)
        pct = np.divide(100.0 * total, rows, out=np.zeros_like(total), where=rows > 0)
        seeds = sorted((r.get("seed") for r, _ in runs), key=lambda s: _sort_key([s]))
        k.update(loss_options=runs[0][0].get("loss_options"), pocket_world=runs[0][0].get("pocket_world"))
        title = "{} · {} · {}-{}-{}".format(" ".join(p for p in (_show(k["trainer"]), loss_label(k, none="")) if p),
                                            _show_backbone(k["backbone"]), k["noise_type"], k["noise_mode"],
                                            k["noise_rate"])
        title += "\n{}, seed{} {}".format(show_dataset(k), "s" if len(seeds) > 1 else "",
                                          " ".join(_show(s) for s in seeds))
        out.append((title, list(key[len(GROUP_KEYS) + 1]), pct, seeds))
    return out


def confusion_figure(records, per_run=False):
    """A heatmap per group (or run): true class down, predicted class across, % of the true class's
    test images; the class names on both axes, the numbers written in where the classes are few."""
    panels = confusion_panels(records, per_run=per_run)
    n = max(len(p[1]) for p in panels)
    side = max(PANEL_W, 0.12 * n + 1.2)
    fig, axes = new_figure(len(panels), ncols=2 if side <= PANEL_W else 1, panel=(side, side))
    tick = max(3.0, min(6.0, 300.0 / max(n, 1)))
    for ax, (title, names, pct, _) in zip(axes, panels):
        ax.grid(False)
        im = ax.imshow(pct, cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
        ax.set_xticks(range(len(names)))
        ax.set_yticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=tick)
        ax.set_yticklabels(names, fontsize=tick)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    if pct[i, j] >= 0.5:
                        ax.text(j, i, "{:.0f}".format(pct[i, j]), ha="center", va="center", fontsize=tick - 0.5,
                                color="black" if pct[i, j] > 60 else "white")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("% of the true class's test images")
    finish(fig, figure_caption("Test confusion matrices ({})".format(
        "per run" if per_run else "counts summed over seeds"), [r for r in records if load_confusion(r) is not None]))
    return fig, "confusion matrices, {} panel(s) ({}), {} class(es)".format(
        len(panels), "one per run" if per_run else "one per group of seeds", n)
