"""A 5-loss PTNL grid (ce, gce, mae, sce, nce_rce) at one seed and one noise rate through
scripts/ptnl/ablation.sh, on the bench data (a generated DTD-sized dataset: 47 classes, 4 shots)
with the ViT-B/32 architecture (random weights), 2 epochs: one process a run (GROUP=0) against
the grouped runs (one process, one data stream), each from the same warm feature cache (the test
split's image features computed once before either is timed, so neither pays it). Prints both
wall times, the ratio and the accuracies (which must be identical).

    python -m benchmarks.grid [--arch ViT-B/32] [--classes 47] [--per-class 14] [--shots 4] [--epochs 2]
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.common import REPO, make_bench

LOSSES = "ce gce mae sce nce_rce"


def grid(work, weights, tag, a, group, out=None):
    env = dict(os.environ, DATA=os.path.join(work, "data"), CLIP_WEIGHTS=weights, SEEDS="1", SHOTS=str(a.shots),
               OUT=out or os.path.join(work, "out-" + tag), PYTHON=sys.executable, CONFIGS="PTNL",
               LOSSES=a.losses, RATES="0.5", GROUP="1" if group else "0",
               PTNL_CACHE_DIR=os.path.join(work, "cache"))
    start = time.perf_counter()
    subprocess.run(["bash", "scripts/ptnl/ablation.sh", "dtd", "vit_b32", "OPTIM.MAX_EPOCH", str(a.epochs),
                    "DATALOADER.NUM_WORKERS", str(a.workers)], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    accs = {}
    for path in glob.glob(os.path.join(env["OUT"], "dtd", "PTNL", "*", "*", "*", "*", "seed1", "results.json")):
        with open(path) as f:
            r = json.load(f)
        accs[r["loss"]] = r["accuracy"]
    return seconds, accs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B/32")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=14, help="images per class (the bench: 14, a 188-image test split)")
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--losses", default=LOSSES)
    a = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="ptnl-bench-grid-")
    try:
        weights = make_bench(work, a.arch, a.classes, a.per_class)
        warm = argparse.Namespace(**dict(vars(a), epochs=1, losses="ce"))
        grid(work, weights, "warm-up", warm, group=False)  # the test split's features into the shared cache
        separate, acc_sep = grid(work, weights, "separate", a, group=False)
        grouped, acc_grp = grid(work, weights, "grouped", a, group=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(a.losses.split())
    print("grid: PTNL x {} losses ({}), seed 1, sym swap 0.5, {} classes, {} shots, {} epochs, {} (random "
          "weights), CPU, warm feature cache".format(n, a.losses, a.classes, a.shots, a.epochs, a.arch))
    print("  separate processes (GROUP=0): {:7.1f} s".format(separate))
    print("  grouped (one process)       : {:7.1f} s   ({:.2f}x faster)".format(grouped, separate / grouped))
    same = acc_sep == acc_grp and len(acc_sep) == n
    print("  accuracies: {} ({})".format(
        ", ".join("{} {:.2f}".format(k, acc_grp.get(k, float("nan"))) for k in a.losses.split()),
        "identical" if same else "DIFFERENT: separate {}".format(acc_sep)))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
