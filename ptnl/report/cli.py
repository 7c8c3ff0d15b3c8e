"""``python -m ptnl.report``: every run under some folders as a table, figures (``--figure KIND
--out FILE``) and a report folder (``--report OUT_DIR``)."""
import os
import os.path as osp
import sys

from ptnl.report.aggregate import aggregate
from ptnl.report.bundle import write_report
from ptnl.report.ensemble import add_ensembles
from ptnl.report.figures import MissingRuns, figure_kinds, write_figure
from ptnl.report.style import figure_format
from ptnl.report.tables import FORMATS, format_header, format_json, format_notes, format_pivot, format_table
from ptnl.runs.read import diverged_run, find_runs, incomplete_run, load_run

def matches(record, wheres) -> bool:
    """Whether a run's fields hold every (field, value) of ``wheres`` (numbers compared as numbers:
    ``noise_rate=0.50`` matches 0.5)."""
    for field, value in wheres:
        have = record.get(field)
        if isinstance(have, (int, float)) and not isinstance(have, bool):
            try:
                if float(value) != float(have):
                    return False
                continue
            except ValueError:
                return False
        if str(have) != value:
            return False
    return True


def main(argv=None, prog="python -m ptnl.report"):
    """The results CLI: ``python -m ptnl.report DIR [DIR ...] [--format F] [--pivot] [--plot FILE.png]
    [--figure KIND --out FILE.(png|pdf|svg)] [--report OUT_DIR] [--std S]``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage lines.

    Returns the exit status (0; 1 when no run is found; 2 when a plot or figure cannot be drawn: the
    runs it needs are missing, or matplotlib is).
    """
    import argparse
    if os.environ.get("PTNL_PLUGINS"):  # figure kinds (register_figure) from the user's plugin files
        from ptnl.plugins import load_plugins
        load_plugins()
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
    p.add_argument("--std", default="population", choices=["population", "sample"],
                   help="population (ddof=0, default) or sample (ddof=1) standard deviation")
    a = p.parse_args(argv)
    if bool(a.figure) != bool(a.out):
        p.error("--figure KIND and --out FILE go together")
    for path in (a.out, a.plot):
        if path:
            try:
                figure_format(path)
            except ValueError as e:
                p.error(str(e))
    wheres = []
    for w in a.where:
        field, sep, value = w.partition("=")
        if not sep or not field:
            p.error("--where takes FIELD=VALUE, got '{}'".format(w))
        wheres.append((field.strip(), value.strip()))
    ddof = 0 if a.std == "population" else 1
    for d in a.dirs:
        if not osp.isdir(d):
            print("not a folder: {}".format(d), file=sys.stderr)
    done, unfinished = find_runs(a.dirs)
    records, incomplete = [], []
    for d in done:
        try:
            rec = load_run(d)
        except (OSError, ValueError) as e:
            incomplete.append(incomplete_run(d, reason="unreadable: {}".format(e)))
            continue
        if rec.get("diverged"):  # listed as such, never averaged
            incomplete.append(diverged_run(rec))
        else:
            records.append(rec)
    incomplete += [incomplete_run(d) for d in unfinished]
    if wheres:
        records = [r for r in records if matches(r, wheres)]
        incomplete = [r for r in incomplete if matches(r, wheres)]
    if not records and not incomplete:
        print("No runs found under {}{}".format(", ".join(a.dirs), " matching " + " ".join(
            "--where " + w for w in a.where) if a.where and done + unfinished else ""))
        return 1
    rows = add_ensembles(aggregate(records, incomplete, ddof=ddof))
    notes_to = sys.stderr if a.format in ("csv", "json") else sys.stdout
    if a.format == "json":
        print(format_json(rows, incomplete, ddof))
    else:
        if rows:
            header = format_header(rows, a.format)
            if header:  # csv: the notes' stream, the table stays parseable (each row has these columns)
                print(header + "\n", file=notes_to)
            print(format_pivot(rows, a.format) if a.pivot else format_table(rows, a.format))
        else:
            print("No finished runs under {}".format(", ".join(a.dirs)), file=notes_to)
        notes = format_notes(rows, incomplete, ddof)
        if a.format == "markdown":
            notes = ["- " + n if not n.startswith("    ") else "    - " + n.strip() for n in notes]
        elif a.format == "latex":
            notes = ["% " + n for n in notes]
        print("", file=notes_to)
        print("\n".join(notes), file=notes_to)
    status = 0
    # --plot FILE is --figure noise --out FILE: one path, one set of checks and messages
    for word, kind, path in (("plot", "noise", a.plot), ("figure", a.figure, a.out)):
        if not path:
            continue
        try:
            described = write_figure(kind, records, rows, path, per_run=a.per_run)
        except ImportError:
            print("--{} needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')".format(word),
                  file=sys.stderr)
            return 2
        except MissingRuns as e:
            print(e, file=sys.stderr)
            status = 2
        else:
            print("{}: {} ({})".format(word, path, described), file=notes_to)
    if a.report:
        try:
            done_report = write_report(a.report, records, rows, incomplete=incomplete, ddof=ddof, sources=a.dirs)
        except ImportError:
            print("--report needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')", file=sys.stderr)
            return 2
        print("report: {} ({} figure(s): {}; not drawn: {})".format(
            osp.join(a.report, "index.md"), len(done_report["figures"]), ", ".join(done_report["figures"]) or "none",
            ", ".join(done_report["skipped"]) or "none"), file=notes_to)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
