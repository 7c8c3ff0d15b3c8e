"""Deprecated: moved to ``ptnl.clip`` (``weights``, ``text``, ``small``)."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.clip")
from ptnl import pocket  # noqa: E402,F401  (the old module resolved "pocket" itself)
from ptnl.clip.small import *  # noqa: E402,F401,F403
from ptnl.clip.text import *  # noqa: E402,F401,F403
from ptnl.clip.text import _QuickGELU  # noqa: E402,F401
from ptnl.clip.weights import *  # noqa: E402,F401,F403
from ptnl.clip.weights import LOCAL_WEIGHTS as LOCAL_MODELS  # noqa: E402,F401
from ptnl.clip.weights import downloads_off as _offline  # noqa: E402,F401
