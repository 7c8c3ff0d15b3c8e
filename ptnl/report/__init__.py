"""Reports over run folders: grouping (``aggregate``), tables (``tables``), figures (``plots``),
seed ensembles (``ensemble``) and the results CLI (``cli``; ``python -m ptnl.report``).
Imports ``ptnl.runs`` and ``ptnl.io`` only (no torch)."""
