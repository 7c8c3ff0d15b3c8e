"""(c) A 2-seed x 2-loss x 3-rate PTNL sweep through scripts/ptnl/main.sh on a generated
DTD-layout dataset, with every optimisation on (text truncation, shared prompt prefix, feature cache, decoded images
kept in memory; cold cache at the start) vs all off. Real architecture, random weights.

    python -m benchmarks.sweep [--arch RN50] [--classes 47] [--shots 2] [--epochs 2]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.common import REPO, random_clip

OFF = ["TRAINER.PTNL.TRUNCATE_TEXT", "False", "TRAINER.PTNL.SHARE_PREFIX", "False",
       "TRAINER.PTNL.CACHE_FEATURES", "False", "TRAINER.PTNL.DECODE_CACHE_MB", "0"]


def sweep(work, weights, opts, tag, a):
    env = dict(os.environ, DATA=os.path.join(work, "data"), CLIP_WEIGHTS=weights, SEEDS="1 2",
               SHOTS=str(a.shots), OUT=os.path.join(work, "out-" + tag), PYTHON=sys.executable, SUMMARY="0",
               PTNL_CACHE_DIR=os.path.join(work, "cache-" + tag))
    start = time.perf_counter()
    for loss in ("ce", "gce"):
        for rate in ("0.0", "0.25", "0.5"):
            subprocess.run(["bash", "scripts/ptnl/main.sh", "dtd", "rn50", rate, loss, "OPTIM.MAX_EPOCH",
                            str(a.epochs), "DATALOADER.NUM_WORKERS", "2"] + opts, cwd=REPO, env=env, check=True,
                           stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="RN50")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=14)
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args(argv)
    import torch
    from ptnl.data.generated import make_dtd
    work = tempfile.mkdtemp(prefix="ptnl-bench-sweep-")
    make_dtd(os.path.join(work, "data"), num_classes=a.classes, per_class=a.per_class, size=256)
    weights = os.path.join(work, "clip.pt")
    torch.save(random_clip(a.arch).half().state_dict(), weights)
    try:
        off = sweep(work, weights, OFF, "off", a)
        on = sweep(work, weights, [], "on", a)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("sweep: 2 seeds x 2 losses x 3 rates = 12 runs of PTNL, {} classes, {} shots, {} epochs, {} "
          "(random weights), CPU".format(a.classes, a.shots, a.epochs, a.arch))
    print("  everything off: {:7.1f} s".format(off))
    print("  everything on : {:7.1f} s   ({:.2f}x faster)".format(on, off / on))


if __name__ == "__main__":
    main()
