"""Test accuracy against a setting, from grouped runs (``aggregate``): against the noise rate (a
panel per dataset: ``noise``; per dataset × backbone: ``backbones``; a line per noise type:
``noise-types``) and against the number of context tokens (a panel per noise rate: ``context``).
Mean over seeds with a ± std band; a line per trainer × loss in its ``style`` look; more lines than
one legend holds well (``LEGEND_MAX``): a panel per trainer (and per ``LEGEND_MAX`` lines), a legend
under each."""
import numpy as np

from ptnl.report.aggregate import _sort_key
from ptnl.report.style import OTHER_LINES, OTHER_MARKERS, PANEL_H, PANEL_W, RC, finish, line_style, new_figure
from ptnl.report.tables import _show, _show_backbone, _value, _varying, figure_caption, loss_label, show_dataset
from ptnl.runs.read import GROUP_KEYS, loss_free

ACCURACY = "test accuracy (%)"
# The noise rate in words, per protocol (DATASET.NOISE.MODE): swap keeps every label and brings in
# other classes' images; flip changes labels.
NOISE_RATE_LABELS = {"swap": "noise rate (fraction of each class's shots that are other classes' images)",
                     "flip": "noise rate (fraction of training labels flipped)"}
NOISE_RATE = "noise rate (fraction of training samples whose label is not their class)"
NOISE_TYPE_STYLES = {"sym": ("o", "-"), "pair": ("s", "--"), "confusion": ("^", ":"), "pair_next": ("D", "-."),
                     "pair_prev": ("v", "-.")}
LEGEND_MAX = 8  # entries one legend under the panels takes before it outgrows them: facet instead


def noise_rate_label(rows):
    """The x-axis label of a noise-rate figure: the protocol's wording when every row ran one."""
    modes = {r.get("noise_mode") for r in rows}
    return NOISE_RATE_LABELS.get(modes.pop(), NOISE_RATE) if len(modes) == 1 else NOISE_RATE


def _line_label(k, varying, losses_of):
    parts = [_show(k["trainer"])]
    if not loss_free(k["trainer"]):
        parts.append(loss_label(k))
    elif len(losses_of.get(k["trainer"], ())) > 1:  # runs apart only in a loss they do not use
        parts.append("TRAINER.PTNL.LOSS={}".format(_show(k["loss"])))
    for key in varying:
        if key in ("trainer", "loss"):
            continue
        v = _value(k, key)
        if v is None:
            continue
        if key == "differs":  # the config keys that keep this line apart from a look-alike
            if v:
                parts.append(v)
            continue
        parts.append({"backbone": _show_backbone(v), "num_shots": "{} shots".format(v),
                      "noise_type": "{}".format(v), "noise_mode": "{}".format(v)}.get(key, "{}={}".format(key, v)))
    return " ".join(parts)


def _panel_title(key, panel_keys, mine):
    """The panel's own settings, then those every line in it shares (backbone, shots, noise)."""
    names = {"dataset": lambda v: show_dataset(dict(mine[0], dataset=v)), "backbone": _show_backbone,
             "noise_rate": "noise rate {}".format, "trainer": _show, "loss": _show, "part": "part {}".format}
    head = " · ".join(names.get(k, "{}".format)(v) for k, v in zip(panel_keys, key))
    same = [_show_backbone(mine[0]["backbone"]) if "backbone" not in panel_keys and
            len({r["backbone"] for r in mine}) == 1 else None,
            "{} shots".format(mine[0]["num_shots"]) if len({r["num_shots"] for r in mine}) == 1 else None,
            "{}-{}".format(mine[0]["noise_type"], mine[0]["noise_mode"])
            if len({(r["noise_type"], r["noise_mode"]) for r in mine}) == 1 and "noise_type" not in panel_keys
            else None]
    sub = ", ".join(p for p in same if p)
    return head + ("\n" + sub if sub else "")


def _gather(rows, panel_keys, line_keys):
    panels = {}
    for r in rows:
        panels.setdefault(tuple(r.get(k) for k in panel_keys), {}).setdefault(
            tuple(r.get(k, "") for k in line_keys), []).append(r)
    return panels


def _facet(rows, panel_keys, line_keys, label_of):
    """(panel keys, {panel key: {line key: rows}}, faceted): the panels as asked while the figure's
    legend holds at most ``LEGEND_MAX`` labels; else a panel per trainer too, and panels of more than
    ``LEGEND_MAX`` lines split into parts (``part`` i/n in the title)."""
    panels = _gather(rows, panel_keys, line_keys)
    labels = {label_of(dict(pts[0])) for lines in panels.values() for pts in lines.values()}
    if len(labels) <= LEGEND_MAX:
        return tuple(panel_keys), panels, False
    if "trainer" not in panel_keys:
        panel_keys = tuple(panel_keys) + ("trainer",)
        panels = _gather(rows, panel_keys, line_keys)
    out = {}
    for pkey, lines in panels.items():
        items = sorted(lines.items(), key=lambda kv: _sort_key(kv[0]))
        parts = (len(items) + LEGEND_MAX - 1) // LEGEND_MAX
        for i in range(parts):
            out[pkey + ("{}/{}".format(i + 1, parts) if parts > 1 else None,)] = dict(
                items[i * LEGEND_MAX:(i + 1) * LEGEND_MAX])
    return tuple(panel_keys) + ("part",), out, True


def accuracy_figure(rows, *, x_key, panel_keys, xlabel, caption, style_of=None, label_of=None):
    """Test accuracy (mean over seeds, ± std band) against ``x_key``: a panel per value of
    ``panel_keys``, a line per remaining setting; groups with missing seeds drawn as open markers.
    More than ``LEGEND_MAX`` line labels: faceted (``_facet``), a legend under each panel.
    Returns (figure, number of lines, panel keys)."""
    rows = [r for r in rows if isinstance(r.get(x_key), (int, float)) and not isinstance(r.get(x_key), bool)]
    line_keys = [k for k in GROUP_KEYS if k not in panel_keys and k != x_key] + ["differs"]
    varying = _varying(rows, line_keys)
    losses_of = {}
    for r in rows:
        losses_of.setdefault(r["trainer"], set()).add(r["loss"])
    label_of = label_of or (lambda k: _line_label(k, varying, losses_of))
    style_of = style_of or (lambda k: line_style(k["trainer"], k["loss"]))
    asked = tuple(panel_keys)
    panel_keys, panels, faceted = _facet(rows, asked, line_keys, label_of)
    ncol_legend = 2 if len(panels) == 1 else 4
    per_panel = max((len(lines) for lines in panels.values()), default=0)
    legend_h = 0.15 * ((per_panel + 1) // 2) + 0.35 if faceted else 0.0  # room under each panel for its legend
    fig, axes = new_figure(len(panels), panel=(PANEL_W, PANEL_H + legend_h))
    handles, nlines, any_open = [], 0, False
    for ax, (pkey, lines) in zip(axes, sorted(panels.items(), key=lambda kv: _sort_key(kv[0]))):
        used, mine_handles = set(), []
        for key, pts in sorted(lines.items(), key=lambda kv: _sort_key(kv[0])):
            k = dict(pts[0])
            st = dict(style_of(k))
            i = 0
            while (st["color"], st["marker"], st["linestyle"]) in used and i < len(OTHER_MARKERS):  # look-alikes
                st.update(marker=OTHER_MARKERS[i], linestyle=OTHER_LINES[i % len(OTHER_LINES)])
                i += 1
            used.add((st["color"], st["marker"], st["linestyle"]))
            pts.sort(key=lambda r: r[x_key])
            x = np.array([p[x_key] for p in pts], dtype=float)
            y = np.array([p["mean"] for p in pts])
            s = np.nan_to_num(np.array([p["std"] for p in pts], dtype=float))
            label = label_of(k)
            (ln,) = ax.plot(x, y, label=label, **st)
            ax.fill_between(x, y - s, y + s, color=st["color"], alpha=0.15, linewidth=0)
            short = [p for p in pts if p["missing"]]
            if short:
                any_open = True
                ax.plot([p[x_key] for p in short], [p["mean"] for p in short], linestyle="none",
                        marker=st["marker"], markersize=6, markerfacecolor="white", markeredgecolor=st["color"],
                        label="_missing seeds")
            mine_handles.append((ln, label))
            nlines += 1
        handles += mine_handles
        mine = [r for pts in lines.values() for r in pts]
        ax.set_title(_panel_title([v for v in pkey if v is not None],
                                  [k for k, v in zip(panel_keys, pkey) if v is not None], mine))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ACCURACY)
        ax.set_xticks(sorted({r[x_key] for r in mine}))
        if faceted:
            ax.legend([h for h, _ in mine_handles], [lab for _, lab in mine_handles], loc="upper center",
                      bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False, fontsize=RC["legend.fontsize"])
    if any_open:
        caption += "\nopen markers: groups missing seeds that other groups of the dataset ran"
    finish(fig, figure_caption(caption, rows), None if faceted else handles, ncol=ncol_legend)
    return fig, nlines, sorted({tuple(v for k, v in zip(panel_keys, p) if k in asked) for p in panels},
                               key=lambda v: _sort_key(v))


def _std_name(rows):
    return "population" if rows and rows[0]["ddof"] == 0 else "sample"


def noise_figure(rows):
    """Accuracy against noise rate: a panel per dataset, a line per trainer × loss (and any other
    setting that differs). Returns (figure, description); ValueError without two noise rates of one
    dataset (``noise_rows``)."""
    rows = noise_rows(rows)
    if not rows:
        raise ValueError("nothing to plot: no dataset with finished runs at two or more noise rates")
    fig, nlines, panels = accuracy_figure(
        rows, x_key="noise_rate", panel_keys=("dataset",), xlabel=noise_rate_label(rows),
        caption="Test accuracy against noise rate: mean over seeds, band ± {} std".format(_std_name(rows)))
    return fig, "accuracy against noise rate, {} line(s) (trainer × loss) with a ± std band, {} panel(s): {}".format(
        nlines, len(panels), ", ".join(_show(p[0]) for p in panels))


def noise_rows(rows):
    """The rows with a noise rate, of the datasets that ran two or more rates (a curve needs them)."""
    rows = [r for r in rows if isinstance(r.get("noise_rate"), (int, float)) and not isinstance(r["noise_rate"], bool)]
    rates = {}
    for r in rows:
        rates.setdefault(r.get("dataset"), set()).add(r["noise_rate"])
    return [r for r in rows if len(rates[r.get("dataset")]) > 1]


def backbones_figure(rows):
    """Accuracy against noise rate, a panel per dataset × backbone."""
    rows = [r for r in rows if isinstance(r["noise_rate"], (int, float))]
    fig, nlines, panels = accuracy_figure(
        rows, x_key="noise_rate", panel_keys=("dataset", "backbone"), xlabel=noise_rate_label(rows),
        caption="Test accuracy against noise rate per backbone: mean over seeds, band ± {} std".format(
            _std_name(rows)))
    return fig, "accuracy against noise rate per backbone, {} line(s), {} panel(s): {}".format(
        nlines, len(panels), ", ".join(_show_backbone(p[1]) for p in panels))


def context_rows(rows):
    """The rows of settings (all but n_ctx) that ran two or more context lengths."""
    line = [k for k in GROUP_KEYS if k != "n_ctx"] + ["differs"]
    lengths = {}
    for r in rows:
        if isinstance(r["noise_rate"], (int, float)) and isinstance(r.get("n_ctx"), int):
            lengths.setdefault(tuple(r.get(k) for k in line), set()).add(r["n_ctx"])
    return [r for r in rows if len(lengths.get(tuple(r.get(k) for k in line), ())) > 1]


def context_figure(rows):
    """Accuracy against the number of context tokens, a panel per dataset × noise rate, a line per
    trainer × loss (the settings that ran two or more context lengths)."""
    rows = context_rows(rows)
    fig, nlines, panels = accuracy_figure(
        rows, x_key="n_ctx", panel_keys=("dataset", "noise_rate"), xlabel="context length (learned tokens)",
        caption="Test accuracy against context length: mean over seeds, band ± {} std".format(_std_name(rows)))
    return fig, "accuracy against context length, {} line(s), {} panel(s) (dataset × noise rate)".format(
        nlines, len(panels))


def noise_types_rows(rows):
    """The rows of settings (all but the noise) that ran two or more noise types; the noise-free runs
    (rate 0, the same for every type) are counted at rate 0 of each type's line."""
    panel = [k for k in GROUP_KEYS if k not in ("noise_type", "noise_mode", "noise_rate")] + ["differs"]
    rows = [r for r in rows if isinstance(r["noise_rate"], (int, float))]
    types = {}
    for r in rows:
        if r["noise_rate"]:
            types.setdefault(tuple(r.get(k) for k in panel), set()).add((r["noise_type"], r["noise_mode"]))
    out = []
    for r in rows:
        kinds = types.get(tuple(r.get(k) for k in panel), set())
        if len(kinds) < 2:
            continue
        if r["noise_rate"]:
            out.append(r)
        else:
            out += [dict(r, noise_type=t, noise_mode=m) for t, m in sorted(kinds)]
    return out


def noise_types_figure(rows):
    """Accuracy against noise rate, a panel per dataset × backbone × trainer × loss that ran two or
    more noise types, a line per noise type (sym, pair, confusion, ...): the trainer's colour, the
    noise type's marker and line style."""
    rows = noise_types_rows(rows)
    varying = [k for k in _varying(rows, [k for k in GROUP_KEYS if k not in (
        "dataset", "backbone", "trainer", "loss", "noise_type", "noise_mode", "noise_rate")] + ["differs"])]

    def style_of(k):
        marker, ls = NOISE_TYPE_STYLES.get(k["noise_type"], (OTHER_MARKERS[0], OTHER_LINES[0]))
        return dict(line_style(k["trainer"], k["loss"]), marker=marker, linestyle=ls)

    def label_of(k):
        extra = [k["differs"] if key == "differs" else "{}={}".format(key, k[key])
                 for key in varying if k.get(key) not in (None, "")]
        return " ".join(["{}-{}".format(k["noise_type"], k["noise_mode"])] + extra)
    fig, nlines, panels = accuracy_figure(
        rows, x_key="noise_rate", panel_keys=("dataset", "backbone", "trainer", "loss"),
        xlabel=noise_rate_label(rows),
        caption="Test accuracy against noise rate per noise type (rate 0: the noise-free runs): mean over seeds, "
                "band ± {} std".format(_std_name(rows)), style_of=style_of, label_of=label_of)
    return fig, "accuracy against noise rate per noise type, {} line(s), {} panel(s) (trainer × loss)".format(
        nlines, len(panels))
