"""Deprecated: moved to ``ptnl.trainers.base``."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.trainers.base")
from ptnl.runs.files import DIAG_FILE, LOGITS_FILE  # noqa: E402,F401
from ptnl.trainers.base import *  # noqa: E402,F401,F403
