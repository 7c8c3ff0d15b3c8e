"""Sweeps: one plan of runs per grid script, handed to an engine (``ENGINE=local|gpus|slurm``).

``plan``: the plan file the scripts build (each run: its ``train.py`` command line, its run folder
and the grid fields of its label), its state on disk and the GPU-hours estimate; ``engines``: the
local engine (one run after another, today's output), the GPU pool (``GPUS``) and the one-run task
a SLURM array element executes; ``slurm``: array submission in chunks below ``MaxArraySize``, the
summary job, and what ``squeue`` says is queued or running; ``status``: ``python -m ptnl.sweep
status OUT``. Imports ``ptnl.runs`` and ``ptnl.io`` only (no torch), so any Python 3 runs it."""
