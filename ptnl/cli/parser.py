"""``train.py``'s command line: CoOp's flags, unchanged, plus PTNL's own (``--dry-run``, ``--verbose``,
``--group``). Imports nothing but argparse, so ``python train.py --help`` answers at once."""
import argparse

USAGE = """Train or evaluate one run, CoOp style: same flags as CoOp's train.py.

    python train.py --root DATA --trainer PTNL --dataset-config-file configs/datasets/dtd.yaml \\
        --config-file configs/trainers/PTNL/rn50.yaml --seed 1 --output-dir out \\
        DATASET.NUM_SHOTS 16 DATASET.NOISE.RATE 0.5 TRAINER.PTNL.LOSS gce

PTNL_PLUGINS (comma-separated modules or .py files) are imported first: a loss, noise type or
trainer registered there is available by name.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python train.py``: CoOp's arguments (same names, defaults and help), then PTNL's."""
    parser = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only non-negative value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the command line and config as a run would, print the resolved config and exit")
    parser.add_argument("--verbose", action="store_true",
                        help="print the arguments, the full config and the environment on the terminal too "
                             "(they are always in log.txt)")
    parser.add_argument("--group", type=str, default="", metavar="FILE",
                        help="train the runs listed in FILE (JSON: a list of train.py argument lists) in one "
                             "process, one data stream for the runs that share it (what the grid scripts do)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line")
    return parser
