"""Reports over run folders: grouping (``aggregate``), tables (``tables``; LaTeX cells in
``latex``), figures (``figures``: the registry of kinds and what each needs; ``plots``: accuracy
against a setting; ``curves``: per-epoch gradients and memorisation; ``heatmaps``: confusion
matrices; ``upl_plot``; ``style``: the shared look and the atomic writer), the report folder
(``bundle``), seed ensembles (``ensemble``) and the results CLI (``cli``; ``python -m ptnl.report``).
Imports ``ptnl.runs`` and ``ptnl.io`` only; matplotlib only inside functions."""
