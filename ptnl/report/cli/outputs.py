"""The results CLI's outputs: the table and its notes, the figures asked for, the report folder."""
import os.path as osp
import sys

from ptnl.report.bundle import write_report
from ptnl.report.figures import MissingRuns, write_figure
from ptnl.report.tables import format_header, format_json, format_notes, format_pivot, format_table



class NeedsMatplotlib(Exception):
    """A figure or the report folder was asked for without matplotlib: the CLI stops with status 2."""

    def __init__(self, flag):
        super().__init__("--{} needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')".format(flag))


def notes_stream(args):
    """Where messages besides the table go: stderr when stdout must stay parseable (csv, json)."""
    return sys.stderr if args.format in ("csv", "json") else sys.stdout


def print_table(args, rows, incomplete) -> None:
    """The table in ``--format`` (or json records), the settings every row shares above it, and the
    notes (incomplete, diverged and collapsed runs) under it."""
    notes_to = notes_stream(args)
    if args.format == "json":
        print(format_json(rows, incomplete, args.ddof))
        return
    if rows:
        header = format_header(rows, args.format)
        if header:  # csv: the notes' stream, the table stays parseable (each row has these columns)
            print(header + "\n", file=notes_to)
        print(format_pivot(rows, args.format) if args.pivot else format_table(rows, args.format))
    else:
        print("No finished runs under {}".format(", ".join(args.dirs)), file=notes_to)
    notes = format_notes(rows, incomplete, args.ddof)
    if args.format == "markdown":
        notes = ["- " + n if not n.startswith("    ") else "    - " + n.strip() for n in notes]
    elif args.format == "latex":
        notes = ["% " + n for n in notes]
    print("", file=notes_to)
    print("\n".join(notes), file=notes_to)


def draw_figure(args, word: str, kind: str, path: str, records, rows) -> int:
    """Draw one figure kind to ``path`` (``--plot`` and ``--figure`` alike): 0, or 2 when the runs
    it needs are missing (named on stderr); ``NeedsMatplotlib`` without matplotlib."""
    try:
        described = write_figure(kind, records, rows, path, per_run=args.per_run)
    except ImportError:
        raise NeedsMatplotlib(word) from None
    except MissingRuns as e:
        print(e, file=sys.stderr)
        return 2
    print("{}: {} ({})".format(word, path, described), file=notes_stream(args))
    return 0


def write_report_folder(args, records, rows, incomplete) -> None:
    """``--report OUT_DIR``: every table and every figure the runs allow (``NeedsMatplotlib``
    without matplotlib)."""
    try:
        done = write_report(args.report, records, rows, incomplete=incomplete, ddof=args.ddof, sources=args.dirs)
    except ImportError:
        raise NeedsMatplotlib("report") from None
    print("report: {} ({} figure(s): {}; not drawn: {})".format(
        osp.join(args.report, "index.md"), len(done["figures"]), ", ".join(done["figures"]) or "none",
        ", ".join(done["skipped"]) or "none"), file=notes_stream(args))
