"""PTNL: noise-robust prompt tuning for CLIP, as a plugin to the Dassl/CoOp toolbox.

Importing ``ptnl`` registers nothing; ``ptnl.compat`` picks the engine (real Dassl or the
built-in ``ptnl.engine``), ``ptnl.trainers.register_trainers()`` registers the trainers. The
package's layers and what each may import are in CONTRIBUTING.md.
"""
__version__ = "0.2.0"
