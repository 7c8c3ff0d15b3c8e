"""Test accuracy against a setting, from grouped runs (``aggregate``): against the noise rate (a
panel per dataset: ``noise``; per dataset × backbone: ``backbones``; a line per noise type:
``noise-types``) and against the number of context tokens (a panel per noise rate: ``context``).
Mean over seeds with a ± std band; a line per trainer × loss in its ``style`` look."""
import numpy as np

from ptnl.report.aggregate import _sort_key
from ptnl.report.style import OTHER_LINES, OTHER_MARKERS, finish, line_style, new_figure, save_figure
from ptnl.report.tables import _show, _show_backbone, _varying
from ptnl.runs.read import GROUP_KEYS, LOSS_FREE_TRAINERS

ACCURACY = "test accuracy (%)"
NOISE_RATE = "noise rate (fraction of training labels flipped)"
NOISE_TYPE_STYLES = {"sym": ("o", "-"), "pair": ("s", "--"), "confusion": ("^", ":"), "pair_next": ("D", "-."),
                     "pair_prev": ("v", "-.")}


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


def _panel_title(key, panel_keys, mine):
    """The panel's own settings, then those every line in it shares (backbone, shots, noise)."""
    names = {"dataset": _show, "backbone": _show_backbone, "noise_rate": "noise rate {}".format,
             "trainer": _show, "loss": _show}
    head = " · ".join(names.get(k, "{}".format)(v) for k, v in zip(panel_keys, key))
    same = [_show_backbone(mine[0]["backbone"]) if "backbone" not in panel_keys and
            len({r["backbone"] for r in mine}) == 1 else None,
            "{} shots".format(mine[0]["num_shots"]) if len({r["num_shots"] for r in mine}) == 1 else None,
            "{}-{}".format(mine[0]["noise_type"], mine[0]["noise_mode"])
            if len({(r["noise_type"], r["noise_mode"]) for r in mine}) == 1 and "noise_type" not in panel_keys
            else None]
    sub = ", ".join(p for p in same if p)
    return head + ("\n" + sub if sub else "")


def accuracy_figure(rows, *, x_key, panel_keys, xlabel, caption, style_of=None, label_of=None):
    """Test accuracy (mean over seeds, ± std band) against ``x_key``: a panel per value of
    ``panel_keys``, a line per remaining setting; groups with missing seeds drawn as open markers.
    Returns (figure, number of lines, panel keys)."""
    rows = [r for r in rows if isinstance(r.get(x_key), (int, float)) and not isinstance(r.get(x_key), bool)]
    line_keys = [k for k in GROUP_KEYS if k not in panel_keys and k != x_key] + ["differs"]
    varying = _varying(rows, line_keys)
    losses_of = {}
    for r in rows:
        losses_of.setdefault(r["trainer"], set()).add(r["loss"])
    panels = {}
    for r in rows:
        panels.setdefault(tuple(r.get(k) for k in panel_keys), {}).setdefault(
            tuple(r.get(k, "") for k in line_keys), []).append(r)
    label_of = label_of or (lambda k: _line_label(k, varying, losses_of))
    style_of = style_of or (lambda k: line_style(k["trainer"], k["loss"]))
    ncol_legend = 2 if len(panels) == 1 else 4
    fig, axes = new_figure(len(panels))
    handles, nlines, any_open = [], 0, False
    for ax, (pkey, lines) in zip(axes, sorted(panels.items(), key=lambda kv: _sort_key(kv[0]))):
        used = set()
        for key, pts in sorted(lines.items(), key=lambda kv: _sort_key(kv[0])):
            k = dict(zip(panel_keys, pkey), **dict(zip(line_keys, key)))
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
            handles.append((ln, label))
            nlines += 1
        mine = [r for pts in lines.values() for r in pts]
        ax.set_title(_panel_title(pkey, panel_keys, mine))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ACCURACY)
        ax.set_xticks(sorted({r[x_key] for r in mine}))
    if any_open:
        caption += "\nopen markers: groups missing seeds that other groups of the dataset ran"
    finish(fig, caption, handles, ncol=ncol_legend)
    return fig, nlines, sorted(panels, key=lambda v: _sort_key(v))


def _std_name(rows):
    return "population" if rows and rows[0]["ddof"] == 0 else "sample"


def noise_figure(rows):
    """Accuracy against noise rate: a panel per dataset, a line per trainer × loss (and any other
    setting that differs). Returns (figure, description)."""
    rows = [r for r in rows if isinstance(r["noise_rate"], (int, float))]
    if not rows:
        raise ValueError("nothing to plot: no finished run with a known noise rate")
    fig, nlines, panels = accuracy_figure(
        rows, x_key="noise_rate", panel_keys=("dataset",), xlabel=NOISE_RATE,
        caption="Test accuracy against noise rate: mean over seeds, band ± {} std".format(_std_name(rows)))
    return fig, "accuracy against noise rate, {} line(s) (trainer × loss) with a ± std band, {} panel(s): {}".format(
        nlines, len(panels), ", ".join(_show(p[0]) for p in panels))


def backbones_figure(rows):
    """Accuracy against noise rate, a panel per dataset × backbone."""
    rows = [r for r in rows if isinstance(r["noise_rate"], (int, float))]
    fig, nlines, panels = accuracy_figure(
        rows, x_key="noise_rate", panel_keys=("dataset", "backbone"), xlabel=NOISE_RATE,
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
        rows, x_key="noise_rate", panel_keys=("dataset", "backbone", "trainer", "loss"), xlabel=NOISE_RATE,
        caption="Test accuracy against noise rate per noise type (rate 0: the noise-free runs): mean over seeds, "
                "band ± {} std".format(_std_name(rows)), style_of=style_of, label_of=label_of)
    return fig, "accuracy against noise rate per noise type, {} line(s), {} panel(s) (trainer × loss)".format(
        nlines, len(panels))


def plot(rows, path, title=None):
    """Accuracy against noise rate (``noise_figure``) written atomically to ``path`` (.png, .pdf or
    .svg). Returns a one-line description."""
    import matplotlib
    from ptnl.report.style import RC
    with matplotlib.rc_context(RC):
        fig, described = noise_figure(rows)
        if title:
            fig.suptitle(title)
        save_figure(fig, path)
    return described
