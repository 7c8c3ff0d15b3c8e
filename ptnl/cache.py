"""Deprecated: moved to ``ptnl.io.cache`` (``python -m ptnl.io.cache``)."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.io.cache")
from ptnl.io.cache import *  # noqa: E402,F401,F403
from ptnl.io.cache import main  # noqa: E402,F401

if __name__ == "__main__":
    main()
