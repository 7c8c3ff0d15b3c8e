"""The algorithms of the sample-selection methods (JoAPR, NLPrompt) as pure functions over arrays:
no trainer, no engine, so each step is unit tested against a direct computation. The trainers in
``ptnl.trainers.selection`` call them once per epoch."""
from ptnl.selection.partition import partition_scores  # noqa: F401
