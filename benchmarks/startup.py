"""Where a run's seconds go before its first training iteration: ``train.py`` (PTNL, ViT-B/32
architecture, random weights, the bench data: 47 classes, 4 shots) from process start to the start
of its first iteration, cold (empty PTNL cache, no few-shot split file) and warm, against
``python -c "import torch, clip"`` plus reading the weights file, the floor any run pays.

    python -m benchmarks.startup [--arch ViT-B/32] [--repeat 3]

The first iteration's start is read from the first batch line (its arrival time minus the batch
time the line itself reports).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.common import REPO, make_bench

FLOOR = ("import time; t = time.perf_counter(); import torch, clip; from ptnl.clip.weights import read_state_dict; "
         "read_state_dict({path!r}); print(time.perf_counter() - t)")


def floor_seconds(weights):
    """Wall time of a process that imports torch and clip and reads the weights (process start included)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR.format(path=weights)], cwd=REPO, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def train_argv(work, weights, out, epochs=1):
    return [sys.executable, "train.py", "--root", os.path.join(work, "data"), "--trainer", "PTNL", "--seed", "1",
            "--dataset-config-file", "configs/datasets/dtd.yaml", "--config-file", "configs/trainers/PTNL/vit_b32.yaml",
            "--output-dir", out, "DATASET.NUM_SHOTS", "4", "DATASET.NOISE.RATE", "0.5", "MODEL.BACKBONE.NAME", weights,
            "OPTIM.MAX_EPOCH", str(epochs), "TRAIN.PRINT_FREQ", "1", "DATALOADER.NUM_WORKERS", "2"]


def to_first_iteration(argv, env):
    """Seconds from process start to the start of the first training iteration; the process is
    stopped once the first batch line is read."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            m = re.search(r"epoch \[1/\d+\] batch \[1/\d+\] time ([0-9.]+)", line)
            if m:
                return time.perf_counter() - t - float(m.group(1))
    finally:
        proc.kill()
        proc.wait()
    raise RuntimeError("train.py ended before its first iteration: " + " ".join(argv))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B/32")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=14)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="ptnl-bench-startup-")
    try:
        weights = make_bench(work, a.arch, a.classes, a.per_class)
        floor = sorted(floor_seconds(weights) for _ in range(a.repeat))[a.repeat // 2]
        cold, warm = [], []
        for k in range(a.repeat):
            env = dict(os.environ, PTNL_CACHE_DIR=os.path.join(work, "cache{}".format(k)))
            shutil.rmtree(os.path.join(work, "data", "dtd", "split_fewshot"), ignore_errors=True)
            cold.append(to_first_iteration(train_argv(work, weights, os.path.join(work, "cold{}".format(k))), env))
            warm.append(to_first_iteration(train_argv(work, weights, os.path.join(work, "warm{}".format(k))), env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print("start-up: train.py (PTNL, {} random weights, {} classes, 4 shots) to its first iteration, CPU, "
          "median of {}".format(a.arch, a.classes, a.repeat))
    print("  import torch, clip + read the weights: {:6.2f} s".format(floor))
    print("  train.py, cold cache                 : {:6.2f} s   ({:.2f}x the floor)".format(med(cold), med(cold) / floor))
    print("  train.py, warm cache                 : {:6.2f} s   ({:.2f}x the floor)".format(med(warm), med(warm) / floor))


if __name__ == "__main__":
    main()
