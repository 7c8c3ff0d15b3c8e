"""The run's shell, what ``python train.py`` is: the command line (``parser``), the config setup
(``setup``: registries, defaults, yaml, flags, presets, settings from elsewhere), the checks made
before anything is written (``checks``), one run (``runner``), the grouping entry (``group``,
``--group FILE``) and the exit handling (``exits``: one ``Error:`` line for a ``PTNLError``, a
traceback for anything else, one ``Interrupted at epoch`` line for a stop).

The heavy modules are imported inside ``main`` and ``run``: ``--help`` answers without torch, and
an engine or plugin error raised while importing is printed by the exit handler.
"""
from typing import Optional, Sequence


def main(args, current=None) -> None:
    """Do what the parsed command line ``args`` asks: one run (train, ``--eval-only``,
    ``--no-train``, ``--dry-run``) or ``--group FILE``. ``current`` (``exits.Current``, given by the
    exit handler) is told the config and trainer as they are made."""
    from ptnl.cli.exits import Current
    from ptnl.cli.group import main_group
    from ptnl.cli.runner import run_one
    current = Current() if current is None else current
    if args.group:
        main_group(args, current)
    else:
        run_one(args, current)


def run(argv: Optional[Sequence[str]] = None) -> None:
    """``python train.py [argv]``: parse, load the registries and run inside the exit handler, then
    end without the interpreter's teardown (``exits.quick_exit``)."""
    from ptnl.cli.exits import exit_handler, quick_exit
    from ptnl.cli.parser import build_parser
    args = build_parser().parse_args(argv)
    with exit_handler() as current:  # user errors: one "Error:" line; Ctrl-C: one "Interrupted at epoch" line
        from ptnl.cli.setup import load_registries
        load_registries()
        main(args, current)
    quick_exit(0)  # finished: everything is written; skip the interpreter's slow teardown
