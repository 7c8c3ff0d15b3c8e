"""The figures of ``python -m ptnl.report DIRS --figure KIND --out FILE``: which runs each needs,
the one-line error naming what to run when they are missing, and drawing one to a file.

Kinds: noise, gradients, memorisation, context, backbones, noise-types, confusion, upl."""
from typing import Dict, List, Tuple

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


# kind: (what it needs and the command that makes such runs, test of the runs, drawing function)
def _need_noise(records, rows):
    return bool(noise_rows(rows))


def _need_gradients(records, rows):
    return bool(curve_groups(records, ("grad_norm_clean", "grad_norm_noisy")))


def _need_memorisation(records, rows):
    return bool(curve_groups(records, ("noisy_memorised", "noisy_true", "clean_acc")))


def _need_context(records, rows):
    return bool(context_rows(rows))


def _need_backbones(records, rows):
    return len(_known(_rated(rows), "backbone")) > 1


def _need_noise_types(records, rows):
    return bool(noise_types_rows(rows))


def _need_confusion(records, rows):
    return any(load_confusion(r) is not None for r in records)


def _need_upl(records, rows):
    return bool(upl_runs(records))


FIGURES = {
    "noise": ("noise needs finished runs at two or more noise rates of one dataset: bash scripts/ptnl/sweep.sh "
              "DATASET BACKBONE",
              _need_noise, lambda records, rows, **o: noise_figure(rows)),
    "gradients": ("gradients needs runs with TRAINER.PTNL.ANALYSIS True and noisy labels: bash scripts/ptnl/"
                  "ablation.sh DATASET BACKBONE TRAINER.PTNL.ANALYSIS True",
                  _need_gradients, lambda records, rows, **o: gradients_figure(records)),
    "memorisation": ("memorisation needs runs trained for epochs at a noise rate above 0 (epoch records in "
                     "results.json): bash scripts/ptnl/sweep.sh DATASET BACKBONE",
                     _need_memorisation, lambda records, rows, **o: memorisation_figure(records)),
    "context": ("context needs runs at two or more context lengths (n_ctx): bash scripts/ptnl/ctx_length.sh "
                "DATASET BACKBONE", _need_context, lambda records, rows, **o: context_figure(rows)),
    "backbones": ("backbones needs runs on two or more backbones: bash scripts/ptnl/sweep.sh DATASET BACKBONE, "
                  "once per backbone (e.g. rn50 and vit_b16)", _need_backbones,
                  lambda records, rows, **o: backbones_figure(rows)),
    "noise-types": ("noise-types needs noisy runs of two or more noise types: bash scripts/ptnl/sweep.sh DATASET "
                    "BACKBONE with NOISE_TYPE=sym, NOISE_TYPE=pair and NOISE_TYPE=confusion",
                    _need_noise_types, lambda records, rows, **o: noise_types_figure(rows)),
    "confusion": ("confusion needs runs with TRAINER.PTNL.ANALYSIS True (they write confusion_matrix.json): "
                  "bash scripts/ptnl/main.sh DATASET BACKBONE RATE LOSS TRAINER.PTNL.ANALYSIS True",
                  _need_confusion, lambda records, rows, per_run=False, **o: confusion_figure(records, per_run)),
    "upl": ("upl needs UPL runs (results.json with 'upl'): bash scripts/upl/main.sh DATASET BACKBONE topk ce "
            "(and random gce; it runs zero-shot CLIP too)", _need_upl, lambda records, rows, **o: upl_figure(records)),
}
FIGURE_KINDS = tuple(FIGURES)


def available(records: List[Dict], rows: List[Dict]) -> Dict[str, str]:
    """{kind: ""} for each figure the runs allow, {kind: the one-line message} for the others."""
    return {kind: "" if need(records, rows) else message for kind, (message, need, _) in FIGURES.items()}


def build_figure(kind: str, records: List[Dict], rows: List[Dict], *, per_run: bool = False) -> Tuple[object, str]:
    """The figure ``kind`` of the runs, drawn in the report style (not written).

    Args:
        kind: one of ``FIGURE_KINDS``.
        records: the finished runs (``load_run``), for per-run files (epochs, confusion matrices, UPL).
        rows: the same runs grouped (``aggregate``), for mean ± std over seeds.
        per_run: ``confusion`` only: a heatmap per run, not per group of seeds.

    Returns (matplotlib Figure, one-line description); ``MissingRuns`` (one line naming what to run)
    when the runs do not allow it; ``ImportError`` without matplotlib.
    """
    if kind not in FIGURES:
        raise ValueError("unknown figure '{}'; one of: {}".format(kind, ", ".join(FIGURE_KINDS)))
    message, need, draw = FIGURES[kind]
    if not need(records, rows):
        raise MissingRuns(message)
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
