"""Accuracy against noise rate: one panel per dataset, one line per trainer x loss."""
import os

import numpy as np

from ptnl.io import atomic_write
from ptnl.report.aggregate import _sort_key
from ptnl.report.tables import _show, _show_backbone, _varying
from ptnl.runs.read import GROUP_KEYS, LOSS_FREE_TRAINERS

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
        if key == "differs":  # the config keys that keep this line apart from a look-alike
            if v:
                parts.append(v)
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
    line_keys = [k for k in GROUP_KEYS if k not in ("dataset", "noise_rate")] + ["differs"]
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
            lines.setdefault(tuple(r.get(k, "") for k in line_keys), []).append(r)
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
