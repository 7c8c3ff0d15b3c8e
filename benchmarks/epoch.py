"""One epoch of the bench (PTNL, ViT-B/32 architecture with random weights, a generated 47-class
DTD-layout dataset, 4 shots, batch 32: 5 iterations, then the test split) through ``train.py``,
whole-process wall time: every optimisation the config switches off (full-length text encoder, no
shared prompt prefix, no feature cache, no decoded-image cache), then on from a cold cache (empty
PTNL cache, no few-shot split file) and warm (the same command again in a new folder), in fp32 and
in bf16 (CPU autocast).

    python -m benchmarks.epoch [--arch ViT-B/32] [--classes 47] [--per-class 14]
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time

from benchmarks.common import REPO, make_bench
from benchmarks.startup import train_argv

OFF = ["TRAINER.PTNL.TRUNCATE_TEXT", "False", "TRAINER.PTNL.SHARE_PREFIX", "False",
       "TRAINER.PTNL.CACHE_FEATURES", "False", "TRAINER.PTNL.DECODE_CACHE_MB", "0"]


def one_epoch(work, weights, name, opts, cache):
    """Wall seconds of one train.py run (a fresh output folder) with PTNL_CACHE_DIR ``cache``."""
    argv = train_argv(work, weights, os.path.join(work, "out-" + name)) + list(opts)
    t = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=dict(os.environ, PTNL_CACHE_DIR=cache), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B/32")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=14)
    a = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="ptnl-bench-epoch-")
    times = {}
    try:
        weights = make_bench(work, a.arch, a.classes, a.per_class)
        split = os.path.join(work, "data", "dtd", "split_fewshot")
        for prec in ("fp32", "bf16"):
            opts = ["TRAINER.PTNL.PREC", prec]
            shutil.rmtree(split, ignore_errors=True)
            times["off", prec] = one_epoch(work, weights, "off-" + prec, opts + OFF, os.path.join(work, "c-off-" + prec))
            shutil.rmtree(split, ignore_errors=True)
            cache = os.path.join(work, "c-" + prec)
            times["cold", prec] = one_epoch(work, weights, "cold-" + prec, opts, cache)
            times["warm", prec] = one_epoch(work, weights, "warm-" + prec, opts, cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("one epoch of PTNL through train.py: {} (random weights), {} classes, 4 shots (5 iterations), the test "
          "split, CPU, whole-process wall time".format(a.arch, a.classes))
    for prec in ("fp32", "bf16"):
        off = times["off", prec]
        print("  {}  all off {:6.1f} s | cold {:6.1f} s ({:.2f}x) | warm {:6.1f} s ({:.2f}x)".format(
            prec, off, times["cold", prec], off / times["cold", prec], times["warm", prec], off / times["warm", prec]))
    print("  bf16 against fp32: cold {:.2f}x, warm {:.2f}x".format(
        times["cold", "fp32"] / times["cold", "bf16"], times["warm", "fp32"] / times["warm", "bf16"]))


if __name__ == "__main__":
    main()
