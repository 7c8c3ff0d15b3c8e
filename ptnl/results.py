"""Deprecated: run files and reading runs moved to ``ptnl.runs`` (``files``, ``layout``, ``logs``,
``read``), tables, plots and the CLI to ``ptnl.report`` (``python -m ptnl.report``). ``python -m
ptnl.results`` still runs the same CLI."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.runs / ptnl.report")
from ptnl.io import write_json_atomic  # noqa: E402,F401
from ptnl.report.aggregate import *  # noqa: E402,F401,F403
from ptnl.report.cli import main as _main  # noqa: E402
from ptnl.report.plots import *  # noqa: E402,F401,F403
from ptnl.report.tables import *  # noqa: E402,F401,F403
from ptnl.runs.files import *  # noqa: E402,F401,F403
from ptnl.runs.layout import *  # noqa: E402,F401,F403
from ptnl.runs.logs import *  # noqa: E402,F401,F403
from ptnl.runs.read import *  # noqa: E402,F401,F403


def main(argv=None):
    return _main(argv, prog="python -m ptnl.results")


if __name__ == "__main__":
    raise SystemExit(main())
