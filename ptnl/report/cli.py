"""``python -m ptnl.report``: every run under some folders as a table (and a plot)."""
import os.path as osp
import sys

from ptnl.report.aggregate import aggregate
from ptnl.report.ensemble import add_ensembles
from ptnl.report.plots import plot
from ptnl.report.tables import format_notes, format_pivot, format_table
from ptnl.runs.read import find_runs, incomplete_run, load_run

def main(argv=None, prog="python -m ptnl.report"):
    """The results CLI: ``python -m ptnl.report DIR [DIR ...] [--format F] [--pivot] [--plot FILE.png] [--std S]``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage lines.

    Returns the exit status (0; 1 when no run is found; 2 when a plot cannot be drawn).
    """
    import argparse
    p = argparse.ArgumentParser(
        prog=prog,
        description="Every run under the folders, grouped by dataset, trainer, backbone, noise, loss and the other "
                    "settings: mean ± std of test accuracy over seeds (population std by default, as CoOp's "
                    "parse_test_res.py), the seeds, and the runs that are incomplete or missing.")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--format", default="plain", choices=["plain", "markdown", "csv"],
                   help="csv: one column per setting, plain numbers; notes go to stderr")
    p.add_argument("--pivot", action="store_true", help="one column per noise rate")
    p.add_argument("--plot", metavar="FILE.png", help="also draw accuracy against noise rate (needs matplotlib)")
    p.add_argument("--std", default="population", choices=["population", "sample"],
                   help="population (ddof=0, default) or sample (ddof=1) standard deviation")
    a = p.parse_args(argv)
    ddof = 0 if a.std == "population" else 1
    for d in a.dirs:
        if not osp.isdir(d):
            print("not a folder: {}".format(d), file=sys.stderr)
    done, unfinished = find_runs(a.dirs)
    records, incomplete = [], []
    for d in done:
        try:
            records.append(load_run(d))
        except (OSError, ValueError) as e:
            incomplete.append(incomplete_run(d, reason="unreadable: {}".format(e)))
    incomplete += [incomplete_run(d) for d in unfinished]
    if not records and not incomplete:
        print("No runs found under {}".format(", ".join(a.dirs)))
        return 1
    rows = add_ensembles(aggregate(records, incomplete, ddof=ddof))
    notes_to = sys.stderr if a.format == "csv" else sys.stdout
    if rows:
        print(format_pivot(rows, a.format) if a.pivot else format_table(rows, a.format))
    else:
        print("No finished runs under {}".format(", ".join(a.dirs)), file=notes_to)
    notes = format_notes(rows, incomplete, ddof)
    if a.format == "markdown":
        notes = ["- " + n if not n.startswith("    ") else "    - " + n.strip() for n in notes]
    print("", file=notes_to)
    print("\n".join(notes), file=notes_to)
    if a.plot:
        try:
            described = plot(rows, a.plot)
        except ImportError:
            print("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')", file=sys.stderr)
            return 2
        except ValueError as e:
            print("no plot: {}".format(e), file=sys.stderr)
            return 2
        print("plot: {} ({})".format(a.plot, described), file=notes_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
