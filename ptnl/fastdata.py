"""Deprecated: moved to ``ptnl.data.decoded``."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.data.decoded")
from ptnl.data.decoded import *  # noqa: E402,F401,F403
