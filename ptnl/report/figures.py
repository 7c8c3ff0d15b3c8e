"""The figures of ``python -m ptnl.report DIRS --figure KIND --out FILE``: which runs each needs,
the one-line error naming what to run when they are missing, and drawing one to a file.

Kinds (``figure_kinds()``): noise, gradients, memorisation, context, backbones, noise-types, confusion,
upl; ``register_figure`` adds one."""
from typing import Callable, Dict, List, Tuple

from ptnl.registry import Registry
from ptnl.report.curves import curve_groups, gradients_figure, memorisation_figure
from ptnl.report.heatmaps import confusion_figure, load_confusion
from ptnl.report.plots import (backbones_figure, context_figure, context_rows, noise_figure, noise_rows,
                               noise_types_figure, noise_types_rows)
from ptnl.report.style import RC, figure_format, save_figure
from ptnl.report.upl_plot import upl_figure, upl_runs


class MissingRuns(ValueError):
    """The runs a figure needs are not among those found; the message is one line naming what to run."""


def _known(rows, key):
    return {r.get(key) for r in rows if r.get(key) is not None}


def _rated(rows):
    return [r for r in rows if isinstance(r.get("noise_rate"), (int, float))]


FIGURES = Registry("figure", "--figure", error=ValueError)


def register_figure(kind: str, *, needs: Callable[[List[Dict], List[Dict]], bool], missing: str) -> Callable:
    """Decorator: register ``draw(records, rows, *, per_run=False) -> (Figure, description)`` as the
    figure ``kind``. ``needs(records, rows)`` says whether the runs allow it; ``missing`` is the one
    line printed when they do not (what to run). A plugin file (PTNL_PLUGINS) adds a kind this way."""
    return FIGURES.register(kind, needs=needs, missing=missing)


def figure_kinds() -> Tuple[str, ...]:
    """The registered figure kinds, in registration order."""
    return tuple(FIGURES.names())


def missing_message(kind: str) -> str:
    """The one-line message of ``kind`` when the runs do not allow it."""
    return FIGURES.meta(kind)["missing"]


def _allows(kind: str, records: List[Dict], rows: List[Dict]) -> bool:
    return FIGURES.meta(kind)["needs"](records, rows)


@register_figure("noise", needs=lambda records, rows: bool(noise_rows(rows)),
                 missing="noise needs finished runs at two or more noise rates of one dataset: bash "
                         "scripts/ptnl/sweep.sh DATASET BACKBONE")
def _noise(records, rows, **o):
    return noise_figure(rows)


@register_figure("gradients",
                 needs=lambda records, rows: bool(curve_groups(records, ("grad_norm_clean", "grad_norm_noisy"))),
                 missing="gradients needs runs with TRAINER.PTNL.ANALYSIS True and noisy labels: bash scripts/ptnl/"
                         "ablation.sh DATASET BACKBONE TRAINER.PTNL.ANALYSIS True")
def _gradients(records, rows, **o):
    return gradients_figure(records)


@register_figure("memorisation",
                 needs=lambda records, rows: bool(curve_groups(records, ("noisy_memorised", "noisy_true",
                                                                          "clean_acc"))),
                 missing="memorisation needs runs trained for epochs at a noise rate above 0 (epoch records in "
                         "results.json): bash scripts/ptnl/sweep.sh DATASET BACKBONE")
def _memorisation(records, rows, **o):
    return memorisation_figure(records)


@register_figure("context", needs=lambda records, rows: bool(context_rows(rows)),
                 missing="context needs runs at two or more context lengths (n_ctx): bash scripts/ptnl/"
                         "ctx_length.sh DATASET BACKBONE")
def _context(records, rows, **o):
    return context_figure(rows)


@register_figure("backbones", needs=lambda records, rows: len(_known(_rated(rows), "backbone")) > 1,
                 missing="backbones needs runs on two or more backbones: bash scripts/ptnl/sweep.sh DATASET "
                         "BACKBONE, once per backbone (e.g. rn50 and vit_b16)")
def _backbones(records, rows, **o):
    return backbones_figure(rows)


@register_figure("noise-types", needs=lambda records, rows: bool(noise_types_rows(rows)),
                 missing="noise-types needs noisy runs of two or more noise types: bash scripts/ptnl/sweep.sh "
                         "DATASET BACKBONE with NOISE_TYPE=sym, NOISE_TYPE=pair and NOISE_TYPE=confusion")
def _noise_types(records, rows, **o):
    return noise_types_figure(rows)


@register_figure("confusion", needs=lambda records, rows: any(load_confusion(r) is not None for r in records),
                 missing="confusion needs runs with TRAINER.PTNL.ANALYSIS True (they write confusion_matrix.json): "
                         "bash scripts/ptnl/main.sh DATASET BACKBONE RATE LOSS TRAINER.PTNL.ANALYSIS True")
def _confusion(records, rows, per_run=False, **o):
    return confusion_figure(records, per_run)


@register_figure("upl", needs=lambda records, rows: bool(upl_runs(records)),
                 missing="upl needs UPL runs (results.json with 'upl'): bash scripts/upl/main.sh DATASET BACKBONE "
                         "topk ce (and random gce; it runs zero-shot CLIP too)")
def _upl(records, rows, **o):
    return upl_figure(records)


def available(records: List[Dict], rows: List[Dict]) -> Dict[str, str]:
    """{kind: ""} for each figure the runs allow, {kind: the one-line message} for the others."""
    return {kind: "" if _allows(kind, records, rows) else missing_message(kind) for kind in figure_kinds()}


def build_figure(kind: str, records: List[Dict], rows: List[Dict], *, per_run: bool = False) -> Tuple[object, str]:
    """The figure ``kind`` of the runs, drawn in the report style (not written).

    Args:
        kind: one of ``figure_kinds()``.
        records: the finished runs (``load_run``), for per-run files (epochs, confusion matrices, UPL).
        rows: the same runs grouped (``aggregate``), for mean ± std over seeds.
        per_run: ``confusion`` only: a heatmap per run, not per group of seeds.

    Returns (matplotlib Figure, one-line description); ``MissingRuns`` (one line naming what to run)
    when the runs do not allow it; ``ImportError`` without matplotlib.
    """
    draw = FIGURES.lookup(kind)  # an unknown kind: ValueError listing the kinds
    if not _allows(kind, records, rows):
        raise MissingRuns(missing_message(kind))
    import matplotlib
    with matplotlib.rc_context(RC):
        return draw(records, rows, per_run=per_run)


def write_figure(kind: str, records: List[Dict], rows: List[Dict], path: str, *, per_run: bool = False) -> str:
    """Draw the figure ``kind`` and write it atomically to ``path`` (.png, .pdf or .svg, by its
    extension). Returns the one-line description; raises as ``build_figure``."""
    figure_format(path)
    fig, described = build_figure(kind, records, rows, per_run=per_run)
    import matplotlib
    with matplotlib.rc_context(RC):
        save_figure(fig, path)
    return described
