"""Deprecated: moved to ``ptnl.report.ensemble`` (``python -m ptnl.report.ensemble``)."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.report.ensemble")
from ptnl.report.ensemble import *  # noqa: E402,F401,F403
from ptnl.report.ensemble import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m ptnl.ensemble"))
