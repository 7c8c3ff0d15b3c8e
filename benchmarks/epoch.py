"""One epoch of the bench (PTNL, ViT-B/32 architecture with random weights, a generated 47-class
DTD-layout dataset, 4 shots, batch 32: 5 iterations, then the test split) through ``train.py``,
whole-process wall time: every optimisation the config switches off (full-length text encoder, no
shared prompt prefix, no feature cache, no decoded-image cache), then on from a cold cache (empty
PTNL cache, no few-shot split file) and warm (the same command again in a new folder), in fp32 and
in bf16 (CPU autocast).

    python -m benchmarks.epoch [--arch ViT-B/32] [--classes 47] [--per-class 14]

Against the reference CoOp trainer (CoOp's ``train.py --trainer CoOp`` under real Dassl, fp32, the
same data, weights and settings), given a Python with Dassl and a CoOp checkout:

    python -m benchmarks.epoch --reference-python /opt/dassl-env/bin/python \\
        --reference-coop /path/to/CoOp [--repeat 3]

runs, ``--repeat`` times in turn, the reference (no few-shot split file), PTNL cold and PTNL warm,
so that the machine's drift reaches all three alike, and prints each round, the load average, and
the cold and warm ratios (reference time over PTNL's: per round, their median and minimum, and
the fastest run of each against the other's). The reference loads the bench's weights file in place of its
download (``clip._download``), nothing else of it is changed; Dassl 0.6.3 itself needs the
warm-up-scheduler and ``torch.load`` fixes of current torch (shared/reference/DASSL_SUBSET.md,
section 11) applied to its installation.
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

# Run by the reference Python in the CoOp checkout: CoOp's train.py as is, its CLIP download
# answered with the bench's weights file (the first argument).
REFERENCE_LAUNCHER = '''import runpy, sys
weights = sys.argv[1]
sys.argv = ["train.py"] + sys.argv[2:]
sys.path.insert(0, ".")
from clip import clip as coop_clip
coop_clip._download = lambda url, root=None: weights
runpy.run_path("train.py", run_name="__main__")
'''


def one_epoch(work, weights, name, opts, cache):
    """Wall seconds of one train.py run (a fresh output folder) with PTNL_CACHE_DIR ``cache``."""
    argv = train_argv(work, weights, os.path.join(work, "out-" + name)) + list(opts)
    t = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=dict(os.environ, PTNL_CACHE_DIR=cache), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def reference_epoch(work, weights, python, coop, name):
    """Wall seconds of CoOp's train.py (``--trainer CoOp``, fp32) on the bench, one epoch, in a
    fresh output folder, from no few-shot split file; its log is kept in ``work``."""
    launcher = os.path.join(work, "coop_launcher.py")
    if not os.path.exists(launcher):
        with open(launcher, "w") as f:
            f.write(REFERENCE_LAUNCHER)
    shutil.rmtree(os.path.join(work, "data", "dtd", "split_fewshot"), ignore_errors=True)
    argv = [python, launcher, weights, "--root", os.path.join(work, "data"), "--trainer", "CoOp", "--seed", "1",
            "--dataset-config-file", "configs/datasets/dtd.yaml",
            "--config-file", "configs/trainers/CoOp/vit_b32.yaml", "--output-dir", os.path.join(work, "out-" + name),
            "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1",
            "DATALOADER.NUM_WORKERS", "2", "TRAINER.COOP.PREC", "fp32"]
    t = time.perf_counter()
    with open(os.path.join(work, name + ".log"), "w") as log:
        proc = subprocess.run(argv, cwd=coop, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        with open(os.path.join(work, name + ".log")) as f:
            tail = f.read()[-2000:]
        raise RuntimeError("the reference run failed (exit {}):\n{}".format(proc.returncode, tail))
    return seconds


def load() -> str:
    return "{:.1f}".format(os.getloadavg()[0])


def compare(a, work, weights):
    """``--repeat`` rounds of reference, PTNL cold, PTNL warm (fp32); prints rounds and ratios."""
    split = os.path.join(work, "data", "dtd", "split_fewshot")
    rounds = []
    for k in range(a.repeat):
        loads = [load()]
        ref = reference_epoch(work, weights, a.reference_python, a.reference_coop, "ref{}".format(k))
        loads.append(load())
        shutil.rmtree(split, ignore_errors=True)
        cache = os.path.join(work, "c{}".format(k))
        cold = one_epoch(work, weights, "cold{}".format(k), ["TRAINER.PTNL.PREC", "fp32"], cache)
        loads.append(load())
        warm = one_epoch(work, weights, "warm{}".format(k), ["TRAINER.PTNL.PREC", "fp32"], cache)
        loads.append(load())
        rounds.append((ref, cold, warm, loads))
        print("  round {}: reference {:6.1f} s | PTNL cold {:6.1f} s ({:.2f}x) | warm {:6.1f} s ({:.2f}x) | "
              "load average {}".format(k + 1, ref, cold, ref / cold, warm, ref / warm, " ".join(loads)), flush=True)
    med = lambda xs: sorted(xs)[(len(xs) - 1) // 2]  # noqa: E731  (the lower median)
    fastest = min(r[0] for r in rounds)
    for i, what in ((1, "cold"), (2, "warm")):
        paired = [r[0] / r[i] for r in rounds]
        print("  {}: reference / PTNL per round: median {:.2f}x, min {:.2f}x; fastest against fastest "
              "({:.1f} s / {:.1f} s): {:.2f}x".format(what, med(paired), min(paired), fastest,
                                                     min(r[i] for r in rounds), fastest / min(r[i] for r in rounds)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B/32")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=14)
    p.add_argument("--reference-python", help="a Python with real Dassl (e.g. /opt/dassl-env/bin/python)")
    p.add_argument("--reference-coop", help="a CoOp checkout (its train.py, trainers/, datasets/, clip/)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of reference, cold, warm (with the reference)")
    a = p.parse_args(argv)
    if bool(a.reference_python) != bool(a.reference_coop):
        p.error("--reference-python and --reference-coop go together")
    if a.reference_coop and not os.path.isfile(os.path.join(a.reference_coop, "trainers", "coop.py")):
        p.error("--reference-coop {}: expected a CoOp checkout (trainers/coop.py not found)".format(a.reference_coop))
    if a.repeat < 1:
        p.error("--repeat: expected at least 1")
    work = tempfile.mkdtemp(prefix="ptnl-bench-epoch-")
    times = {}
    try:
        weights = make_bench(work, a.arch, a.classes, a.per_class)
        if a.reference_python:
            print("one epoch through train.py: PTNL (fp32) against the reference CoOp trainer ({}), {} (random "
                  "weights), {} classes, 4 shots (5 iterations), the test split, CPU ({} cores), whole-process wall "
                  "time".format(a.reference_python, a.arch, a.classes, os.cpu_count()), flush=True)
            compare(a, work, weights)
            return
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
