"""CoOp-layout datasets; importing a module registers its class in the engine's registry."""
from . import dtd  # noqa: F401
