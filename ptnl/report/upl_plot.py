"""``upl``: UPL against zero-shot CLIP. Per dataset × backbone, test accuracy per loss of each
pseudo-label selection (UPL top-K, UPL random, ...; mean ± std over seeds) with zero-shot CLIP as a
line, and beside it the pseudo-labels' accuracy (over the training split and over the K per class
selected; ``results.json`` → ``upl``)."""
import numpy as np

from ptnl.report.aggregate import _sort_key
from ptnl.report.style import OKABE_ITO, colour, finish, new_figure
from ptnl.report.tables import _show, _show_backbone, figure_caption, show_dataset

SELECTION_COLOURS = {"topk": "#0072B2", "random": "#D55E00"}


def selection_name(r):
    """What tells two UPL groups apart: the selection, then the rest of the VARIANT folder."""
    sel, var = (r.get("upl") or {}).get("selection") or "", r.get("variant") or ""
    if var and sel and not var.startswith(sel):
        return "{} {}".format(sel, var)
    return var or sel or "UPL"


def upl_runs(records):
    return [r for r in records if isinstance(r.get("upl"), dict)]


def _stats(values):
    v = np.array([x for x in values if isinstance(x, (int, float))], dtype=float)
    return (float(v.mean()), float(v.std())) if len(v) else (np.nan, 0.0)


def upl_figure(records):
    """Two panels per dataset × backbone: test accuracy bars (a group per loss, a bar per
    selection; zero-shot CLIP dashed), and pseudo-label accuracy bars per selection."""
    upl = upl_runs(records)
    zs = [r for r in records if r.get("trainer") == "ZeroshotCLIP"]
    places = sorted({(r.get("dataset"), r.get("backbone")) for r in upl}, key=lambda v: _sort_key(v))
    fig, axes = new_figure(2 * len(places))
    handles, nbars = [], 0
    for i, (ds, bb) in enumerate(places):
        ax, ax_pl = axes[2 * i], axes[2 * i + 1]
        mine = [r for r in upl if (r.get("dataset"), r.get("backbone")) == (ds, bb)]
        sels = sorted({selection_name(r) for r in mine})
        losses = sorted({r.get("loss") for r in mine}, key=lambda v: _sort_key([v]))
        width = 0.8 / len(sels)
        cols = {s: SELECTION_COLOURS.get(s.split()[0].split("-")[0], OKABE_ITO[2 + j % 5]) for j, s in enumerate(sels)}
        for j, s in enumerate(sels):
            stats = [_stats([r["accuracy"] for r in mine if r.get("loss") == lo and selection_name(r) == s])
                     for lo in losses]
            x = np.arange(len(losses)) + (j - (len(sels) - 1) / 2) * width
            bars = ax.bar(x, [m for m, _ in stats], width, yerr=[sd for _, sd in stats], color=cols[s],
                          capsize=2, label="UPL " + s, error_kw={"elinewidth": 0.8})
            handles.append((bars, "UPL " + s))
            nbars += len(losses)
        ax.set_xticks(range(len(losses)))
        ax.set_xticklabels([_show(lo) for lo in losses])
        ax.set_xlabel("loss")
        ax.set_ylabel("test accuracy (%)")
        ref = [r["accuracy"] for r in zs if (r.get("dataset"), r.get("backbone")) == (ds, bb)]
        if ref:
            ln = ax.axhline(float(np.mean(ref)), color=colour("ZeroshotCLIP"), linestyle="--", linewidth=1.2,
                            label="zero-shot CLIP")
            handles.append((ln, "zero-shot CLIP"))
        where = show_dataset({"dataset": ds, "pocket_world": any(r.get("pocket_world") for r in mine)})
        ax.set_title("{} · {}: test accuracy".format(where, _show_backbone(bb)))
        for j, (metric, what) in enumerate((("pseudo_label_accuracy", "whole training split"),
                                            ("selection_accuracy", "selected K per class"))):
            stats = [_stats([(r["upl"] or {}).get(metric) for r in mine if selection_name(r) == s]) for s in sels]
            x = np.arange(len(sels)) + (j - 0.5) * 0.4
            bars = ax_pl.bar(x, [m for m, _ in stats], 0.4, yerr=[sd for _, sd in stats], capsize=2,
                             color=[cols[s] for s in sels], alpha=1.0 if j else 0.45, edgecolor="black",
                             linewidth=0.4, hatch=None if j else "//")
            for xi, (m, _) in zip(x, stats):
                if not np.isnan(m):
                    ax_pl.text(xi, m + 1, "{:.0f}".format(m), ha="center", va="bottom", fontsize=5)
            handles.append((bars, "pseudo-labels: " + what))
        ax_pl.set_xticks(range(len(sels)))
        ax_pl.set_xticklabels(["UPL " + s for s in sels])
        ax_pl.set_ylim(0, 105)
        ax_pl.set_ylabel("pseudo-label accuracy (%)")
        ax_pl.set_title("{} · {}: pseudo-label accuracy".format(where, _show_backbone(bb)))
    finish(fig, figure_caption("UPL against zero-shot CLIP (mean ± std over seeds)", upl), handles, ncol=3)
    return fig, "UPL vs zero-shot CLIP, {} accuracy bar(s), {} panel(s) (test accuracy and pseudo-label accuracy " \
                "per dataset × backbone)".format(nbars, 2 * len(places))
