"""Deprecated: moved to ``ptnl.clip.templates``."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.clip.templates")
from ptnl.clip.templates import *  # noqa: E402,F401,F403
