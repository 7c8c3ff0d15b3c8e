"""The sample-selection trainers: the framework (``base``: per-epoch partitions of the noisy training
set, training passes, subset loaders, partition scores, method presets) and the methods on it, one
file each (``joapr``, ``nlprompt``)."""
from ptnl.trainers.selection.base import (SampleSelectionTrainer, apply_method_presets, known_noise,  # noqa: F401
                                          selection_trainer)
from ptnl.trainers.selection.joapr import JoAPR  # noqa: F401
from ptnl.trainers.selection.nlprompt import NLPrompt  # noqa: F401
