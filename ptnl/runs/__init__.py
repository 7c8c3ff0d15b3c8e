"""Run folders: their files and writer (``files``), the scripts' folder layout (``layout``), Dassl /
CoOp logs (``logs``) and reading runs back (``read``). Imports ``ptnl.io`` only (no torch)."""
