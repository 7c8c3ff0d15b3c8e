"""One look for every figure: a colour-blind-safe palette (Okabe & Ito) with a colour per trainer and a
marker / line style per loss, per method for JoAPR and NLPrompt, which use their own losses (so a
trainer × loss looks the same in every figure), fonts sized for a paper's column (3.4 in per panel),
panels laid out in up to two columns, one legend under them (under each panel when the lines are
many), and the atomic writer (PNG, PDF or SVG by the file's extension). matplotlib is imported here only inside
functions: it is an optional extra."""
import os.path as osp
import zlib

from ptnl.io import atomic_write

# Okabe & Ito (2008), the colour-blind-safe qualitative palette; yellow last (weak on white)
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
TRAINER_COLOURS = {
    "PTNL": "#0072B2", "CoOp": "#0072B2", "UPL": "#0072B2", "FullPromptTuning": "#56B4E9", "CLSTuning": "#009E73",
    "ClassifierR": "#D55E00", "ClassifierC": "#E69F00", "TEncFT": "#CC79A7", "LinearProbe": "#000000",
    "ZeroshotCLIP": "#999999", "ImageNetFT": "#F0E442", "JoAPR": "#D55E00", "NLPrompt": "#009E73",
}
LOSS_STYLES = {"ce": ("o", "-"), "gce": ("s", "--"), "mae": ("^", ":"), "sce": ("D", "-."), "nce_rce": ("v", ":")}
# Methods that train with their own losses whatever TRAINER.PTNL.LOSS says: their own marker and line
# style, so that JoAPR is never drawn as PTNL with CE.
METHOD_STYLES = {"JoAPR": ("X", "-."), "NLPrompt": ("P", "-.")}  # markers no loss has
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
    """The trainer's colour; a trainer without one gets a palette colour from its name (stable)."""
    return TRAINER_COLOURS.get(trainer) or OKABE_ITO[_stable_index(trainer, len(OKABE_ITO) - 1)]


def line_style(trainer, loss) -> dict:
    """``plot`` keywords of a trainer × loss: the trainer's colour, the loss's marker and line style
    (a method with its own losses: the method's, ``METHOD_STYLES``)."""
    if trainer in METHOD_STYLES:
        marker, ls = METHOD_STYLES[trainer]
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
