"""Deprecated: moved to ``ptnl.clip.prompts``."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.clip.prompts")
from ptnl.clip.heads import TextClassifier  # noqa: E402,F401
from ptnl.clip.prompts import *  # noqa: E402,F401,F403
from ptnl.clip.prompts import _bpe_len, _tokenizer  # noqa: E402,F401
