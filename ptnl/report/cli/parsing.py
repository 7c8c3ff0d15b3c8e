"""The results CLI's command line: the parser and the checks that need no run."""
import argparse
import os
from typing import List, Optional, Tuple

from ptnl.report.figures import figure_kinds
from ptnl.report.style import figure_format
from ptnl.report.tables import FORMATS


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of ``python -m ptnl.report`` (``--figure`` lists the registered kinds)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Every run under the folders, grouped by dataset, trainer, backbone, noise, loss and the other "
                    "settings: mean ± std of test accuracy over seeds (population std by default, as CoOp's "
                    "parse_test_res.py), the seeds, and the runs that are incomplete, diverged or missing; "
                    "above the table, the settings every row shares; seeds that collapsed (near chance, or far "
                    "below zero-shot CLIP) are marked and named under it.")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--format", default="plain", choices=list(FORMATS),
                   help="csv: one column per setting, plain numbers; notes go to stderr. latex: a booktabs "
                        "tabular, mean \\pm std, the best of each accuracy column in bold; notes as %% comments. "
                        "json: one record per setting with every seed's accuracy and the settings (--pivot "
                        "ignored); other messages go to stderr")
    p.add_argument("--pivot", action="store_true", help="one column per noise rate")
    p.add_argument("--plot", metavar="FILE.png", help="also draw accuracy against noise rate (needs matplotlib); "
                                                      "the same as --figure noise --out FILE")
    p.add_argument("--figure", metavar="KIND", choices=list(figure_kinds()),
                   help="draw one figure to --out (needs matplotlib): " + ", ".join(figure_kinds()))
    p.add_argument("--out", metavar="FILE", help="the file of --figure: .png, .pdf or .svg")
    p.add_argument("--per-run", action="store_true", help="--figure confusion: a heatmap per run, not per group")
    p.add_argument("--report", metavar="OUT_DIR",
                   help="write every table (md, tex, csv) and every figure the runs allow (png, pdf) into OUT_DIR, "
                        "with an index.md that embeds them (needs matplotlib)")
    p.add_argument("--where", metavar="FIELD=VALUE", action="append", default=[],
                   help="only runs whose FIELD (dataset, trainer, backbone, noise_type, noise_rate, loss, num_shots, "
                        "n_ctx, seed, ...) is VALUE; repeatable (all must hold), e.g. --where noise_rate=0.5")
    p.add_argument("--protocol", choices=["base2new", "xd"],
                   help="the base-to-new (base, new, H) or cross-dataset (one column per target) table of the runs "
                        "and their --eval-only evaluations instead (ptnl.report.protocols; plain, markdown, csv)")
    p.add_argument("--std", default="population", choices=["population", "sample"],
                   help="population (ddof=0, default) or sample (ddof=1) standard deviation")
    return p


def figure_requests(args) -> List[Tuple[str, str, str]]:
    """(flag word, figure kind, file) of each figure asked for: ``--plot FILE`` is ``--figure noise
    --out FILE``, so both go through one path, one set of checks and messages."""
    asked = (("plot", "noise", args.plot), ("figure", args.figure, args.out))
    return [(word, kind, path) for word, kind, path in asked if path]


def parse_args(argv: Optional[List[str]], prog: str) -> argparse.Namespace:
    """The parsed command line, checked (``--figure`` with ``--out``, figure file types, ``--where``
    pairs, parsed into ``wheres``; ``ddof`` from ``--std``); a bad one exits with argparse's usage
    line. Loads ``PTNL_PLUGINS`` first, so plugin figure kinds are choices."""
    if os.environ.get("PTNL_PLUGINS"):  # figure kinds (register_figure) from the user's plugin files
        from ptnl.plugins import load_plugins
        load_plugins()
    p = build_parser(prog)
    a = p.parse_args(argv)
    if bool(a.figure) != bool(a.out):
        p.error("--figure KIND and --out FILE go together")
    for _, _, path in figure_requests(a):
        try:
            figure_format(path)
        except ValueError as e:
            p.error(str(e))
    a.wheres = []
    for w in a.where:
        field, sep, value = w.partition("=")
        if not sep or not field:
            p.error("--where takes FIELD=VALUE, got '{}'".format(w))
        a.wheres.append((field.strip(), value.strip()))
    a.ddof = 0 if a.std == "population" else 1
    return a
