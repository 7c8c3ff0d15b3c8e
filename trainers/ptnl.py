"""Registers every trainer registered with ``@register_trainer`` so far (``ptnl.trainers.available_trainers()``:
PTNL's, and a plugin's once its file is loaded) in the active engine's registry."""
from ptnl.trainers import register_trainers

register_trainers()
