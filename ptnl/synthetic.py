"""Deprecated: moved to ``ptnl.data.generated`` (``python -m ptnl.data.generated``)."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.data.generated")
from ptnl.data.generated import *  # noqa: E402,F401,F403
from ptnl.data.generated import main  # noqa: E402,F401

if __name__ == "__main__":
    main()
