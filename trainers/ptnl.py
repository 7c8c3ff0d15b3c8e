"""Registers the PTNL trainer (CoOp-style module: copy it into a fork or import it)."""
from ptnl.compat import TRAINER_REGISTRY
from ptnl.trainers import PTNL

if "PTNL" not in TRAINER_REGISTRY.registered_names():
    TRAINER_REGISTRY.register(PTNL)
