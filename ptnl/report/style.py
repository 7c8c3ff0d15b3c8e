"""One look for every figure: a colour per trainer (its class's ``COLOUR``, Okabe & Ito's colour-blind-safe
palette for the paper's trainers; a trainer without one gets a spare colour of its own) and a marker / line
style per loss, or per method where the class says ``LINE_STYLE`` (JoAPR and NLPrompt, which use their own
losses), so a trainer × loss looks the same in every figure; the classes are read from their source
(``ptnl.io.trainer_classes``, PTNL_PLUGINS included); fonts sized for a paper's column (3.4 in per panel),
panels laid out in up to two columns, one legend under them (under each panel when the lines are
many), and the atomic writer (PNG, PDF or SVG by the file's extension). matplotlib is imported here only inside
functions: it is an optional extra."""
import os.path as osp
import zlib

from ptnl.io import atomic_write
from ptnl.io.trainer_classes import declared

# Okabe & Ito (2008), the colour-blind-safe qualitative palette; yellow last (weak on white)
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
# Colours for trainers whose class declares none (a plugin's, a CoOp fork's): Paul Tol's muted and light
# schemes; any a class declares is skipped.
SPARE_COLOURS = ("#44AA99", "#CC6677", "#88CCEE", "#DDCC77", "#999933", "#661100", "#6699CC", "#EE8866",
                 "#AAAA00", "#77AADD", "#EEDD88", "#FFAABB")
LOSS_STYLES = {"ce": ("o", "-"), "gce": ("s", "--"), "mae": ("^", ":"), "sce": ("D", "-."), "nce_rce": ("v", ":")}
OTHER_MARKERS = ("P", "X", "*", "h", "<", ">")
OTHER_LINES = ("-", "--", "-.", ":")
FIGURE_FORMATS = ("png", "pdf", "svg")

PANEL_W, PANEL_H = 3.4, 2.4  # inches: one panel is one paper column
RC = {"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "legend.fontsize": 6, "xtick.labelsize": 6,
      "ytick.labelsize": 6, "lines.linewidth": 1.2, "lines.markersize": 3.5, "axes.linewidth": 0.6,
      "grid.linewidth": 0.4, "savefig.dpi": 200, "pdf.fonttype": 42, "svg.fonttype": "none"}


def _stable_index(text, n):
    return zlib.crc32(str(text).encode("utf-8")) % n


def colour(trainer) -> str:
    """The colour ``trainer``'s class declares (``COLOUR``, not inherited). A trainer without one gets a
    spare colour no class declares: the registered ones in name order, any other name (a CoOp fork's
    log) by a stable hash of it among the rest; stable for one set of trainer classes."""
    declared_colours = declared("COLOUR", None, inherited=False)
    own = declared_colours.get(trainer)
    if isinstance(own, str):
        return own
    taken = {c.upper() for c in declared_colours.values() if isinstance(c, str)}
    spare = [c for c in SPARE_COLOURS if c.upper() not in taken] or list(SPARE_COLOURS)
    plain = sorted(name for name, c in declared_colours.items() if not isinstance(c, str))
    if trainer in plain:
        return spare[plain.index(trainer) % len(spare)]
    rest = spare[len(plain):] or spare
    return rest[_stable_index(trainer, len(rest))]


def line_style(trainer, loss) -> dict:
    """``plot`` keywords of a trainer × loss: the trainer's colour, the loss's marker and line style
    (a method with its own losses: its class's ``LINE_STYLE``, a marker no loss has)."""
    own = declared("LINE_STYLE", None, inherited=False).get(trainer)
    if isinstance(own, tuple) and len(own) == 2:
        marker, ls = own
    elif loss in LOSS_STYLES:
        marker, ls = LOSS_STYLES[loss]
    else:
        marker, ls = OTHER_MARKERS[_stable_index(loss, len(OTHER_MARKERS))], OTHER_LINES[
            _stable_index(loss, len(OTHER_LINES))]
    return {"color": colour(trainer), "marker": marker, "linestyle": ls}


def figure_format(path) -> str:
    """png | pdf | svg from the file's extension; ValueError for any other."""
    ext = osp.splitext(str(path))[1].lstrip(".").lower()
    if ext not in FIGURE_FORMATS:
        raise ValueError("a figure is written as .png, .pdf or .svg, not '{}'".format(osp.basename(str(path))))
    return ext


def new_figure(npanels, ncols=2, panel=(PANEL_W, PANEL_H), sharey=False):
    """A figure of ``npanels`` panels (up to ``ncols`` per row, each ``panel`` inches); ``finish``
    adds the room for the title and the legend. Agg canvas, no pyplot state. Returns (fig, axes)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    ncols = max(1, min(ncols, npanels))
    nrows = (npanels + ncols - 1) // ncols
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows))
        FigureCanvasAgg(fig)
        axes = []
        for i in range(npanels):
            share = axes[0] if sharey and axes else None
            axes.append(fig.add_subplot(nrows, ncols, i + 1, sharey=share))
            axes[-1].grid(alpha=0.3)
    return fig, axes


def finish(fig, title=None, handles=None, ncol=None):
    """A title above the panels (wrapped to the figure's width), one legend (``handles``: (artist,
    label) pairs, duplicates dropped) under them; the figure grows by the room they take."""
    import textwrap

    import matplotlib
    with matplotlib.rc_context(RC):
        width, panels_h = fig.get_figwidth(), fig.get_figheight()
        legend_h = title_h = 0.0
        labels = {}
        for h, lab in handles or ():
            labels.setdefault(lab, h)
        if labels:
            ncol = ncol or max(2, int(width // 1.6))
            ncol = min(len(labels), ncol)
            legend_h = 0.15 * ((len(labels) + ncol - 1) // ncol) + 0.08
        if title:
            chars = max(40, int(width * 17))  # characters of 7 pt text across the figure
            title = "\n".join(textwrap.fill(part, chars) for part in title.split("\n"))
            title_h = 0.13 * (title.count("\n") + 1) + 0.08
        height = panels_h + legend_h + title_h
        fig.set_size_inches(width, height)
        if labels:
            fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=ncol, frameon=False,
                       fontsize=RC["legend.fontsize"])
        fig.tight_layout(rect=(0, legend_h / height, 1, 1.0 - title_h / height))
        if title:  # after the layout, which would make room for it a second time
            fig.suptitle(title, fontsize=RC["axes.titlesize"], y=1.0 - 0.03 / height, va="top")
    return fig


def save_figure(fig, path) -> None:
    """Write the figure atomically (via a temporary file and a rename), its format from ``path``'s
    extension (png | pdf | svg)."""
    import matplotlib
    fmt = figure_format(path)
    with matplotlib.rc_context(RC):
        atomic_write(str(path), lambda f: fig.savefig(f, format=fmt, bbox_inches="tight", pad_inches=0.03),
                     mode="wb")
