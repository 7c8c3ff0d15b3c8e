"""Deprecated: moved to ``ptnl.clip.heads``."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.clip.heads")
from ptnl.clip.heads import *  # noqa: E402,F401,F403
