"""Deprecated: moved to ``ptnl.clip.features`` (confusion scores: ``ptnl.noise.confusion``)."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.clip.features")
from ptnl.clip.features import *  # noqa: E402,F401,F403
from ptnl.clip.templates import dataset_template  # noqa: E402,F401
from ptnl.clip.weights import _DIGESTS, weights_digest  # noqa: E402,F401
from ptnl.noise.confusion import ConfusionScorer  # noqa: E402,F401
