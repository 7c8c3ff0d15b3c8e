"""``python -m ptnl.report``: every run under some folders as a table, figures (``--figure KIND
--out FILE``) and a report folder (``--report OUT_DIR``). The command line (``parsing``), the runs
it selects (``selection``) and what it writes (``outputs``) are one module each."""
import sys

from ptnl.report.aggregate import aggregate
from ptnl.report.cli.outputs import NeedsMatplotlib, draw_figure, print_table, write_report_folder
from ptnl.report.cli.parsing import figure_requests, parse_args
from ptnl.report.cli.selection import select_runs
from ptnl.report.ensemble import add_ensembles


def main(argv=None, prog="python -m ptnl.report"):
    """The results CLI: ``python -m ptnl.report DIR [DIR ...] [--format F] [--pivot] [--plot FILE.png]
    [--figure KIND --out FILE.(png|pdf|svg)] [--report OUT_DIR] [--std S]``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage lines.

    Returns the exit status (0; 1 when no run is found; 2 when a plot or figure cannot be drawn: the
    runs it needs are missing, or matplotlib is).
    """
    a = parse_args(argv, prog)
    if a.protocol:  # the transfer protocols' tables (scripts/ptnl/base2new.sh, xd.sh)
        from ptnl.report.protocols import main as protocol_main
        return protocol_main([a.protocol, *a.dirs, "--format", a.format], prog=prog + " --protocol")
    records, incomplete, found = select_runs(a.dirs, a.wheres)
    if not records and not incomplete:
        print("No runs found under {}{}".format(", ".join(a.dirs), " matching " + " ".join(
            "--where " + w for w in a.where) if a.where and found else ""))
        return 1
    rows = add_ensembles(aggregate(records, incomplete, ddof=a.ddof))
    print_table(a, rows, incomplete)
    status = 0
    try:
        for word, kind, path in figure_requests(a):
            status = max(status, draw_figure(a, word, kind, path, records, rows))
        if a.report:
            write_report_folder(a, records, rows, incomplete)
    except NeedsMatplotlib as e:
        print(e, file=sys.stderr)
        return 2
    return status
