"""The paper's Figure 1 for one dataset as one grid: ``scripts/ptnl/sweep.sh`` (PTNL with CE and GCE,
the linear probe and the randomly initialised linear classifier, every noise rate, 3 seeds) on a
generated 47-class, 16-shot DTD-layout dataset, in four modes from the same warm feature cache:
separate processes (GROUP=0), a process a group (GROUP=1 PACK=0 STACK=0: the runs that share a data
stream train in one process, as before the grid became one process), one process (STACK=0: the
grid's groups and lone runs one after another in one process, ``ptnl.sweep.group.pack``) and one
process with stacked groups (the defaults: the runs of one prompt shape in a group also share one
text-encoder pass and one backward, ``ptnl.trainers.stacked``). Prints each mode's wall time, the
ratios, and whether every run's test accuracy is the same in every mode (and every round).

    python -m benchmarks.figure1 --short   # CPU: a small CLIP (32 px), rates 0.0 0.5, 2 epochs, no
                                           # workers, the linear probe at a fixed C
    python -m benchmarks.figure1           # the full grid (GPU): ViT-B/32 architecture (random
                                           # weights), the paper's 7 rates and 50 epochs

Any setting can be changed (--rates, --seeds, --epochs, ...); --modes picks modes. With --noise-mode
flip (NLPrompt's protocol) the rates of one seed relabel the same items: one group and one stack a seed.
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

MODES = {"separate": {"GROUP": "0"}, "grouped": {"GROUP": "1", "PACK": "0", "STACK": "0"},
         "packed": {"GROUP": "1", "PACK": "1", "STACK": "0"}, "stacked": {"GROUP": "1", "PACK": "1", "STACK": "1"}}
PAPER_RATES = "0.0 0.125 0.25 0.375 0.5 0.625 0.75"


def settings(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="the CPU version (a small CLIP, 2 rates, 2 epochs)")
    p.add_argument("--arch", default=None, help="ViT-B/32 (full) | small (short): a generated small CLIP")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=None,
                   help="images per class, 50/20/30 train/val/test (full: 80, 40 train like DTD; short: 64)")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--rates", default=None, help="noise rates (full: the paper's {})".format(PAPER_RATES))
    p.add_argument("--seeds", default="1 2 3")
    p.add_argument("--epochs", type=int, default=None, help="full: the configs' 50; short: 2")
    p.add_argument("--trainers", default="PTNL LinearProbe ClassifierR")
    p.add_argument("--losses", default="ce gce")
    p.add_argument("--noise-mode", default="swap", choices=("swap", "flip"))
    p.add_argument("--workers", type=int, default=None, help="DATALOADER.NUM_WORKERS (full: the config's; short: 0)")
    p.add_argument("--modes", default="separate grouped packed stacked")
    p.add_argument("--engine", default="local", help="ENGINE of the grid script (local | gpus)")
    p.add_argument("--rounds", type=int, default=1, help="run the grid this many times in each mode (times summed)")
    a = p.parse_args(argv)
    a.arch = a.arch or ("small" if a.short else "ViT-B/32")
    a.rates = a.rates or ("0.0 0.5" if a.short else PAPER_RATES)
    a.epochs = a.epochs or (2 if a.short else 50)
    a.per_class = a.per_class or (64 if a.short else 80)
    if a.workers is None and a.short:
        a.workers = 0  # a small CLIP on 32-px images: worker processes cost more than they save
    for mode in a.modes.split():
        if mode not in MODES:
            p.error("--modes: {!r} is not one of {}".format(mode, " ".join(MODES)))
    return a


def make_data(work, a):
    """The dataset and the weights file; the trailing train.py options the architecture needs."""
    if a.arch != "small":
        return make_bench(work, a.arch, a.classes, a.per_class), []
    from ptnl.data.generated import make_clip, make_dtd
    make_dtd(os.path.join(work, "data"), num_classes=a.classes, per_class=a.per_class, size=40)
    # the linear probe's fixed C (one fit, not CoOp's search over C): it runs alike in every mode
    opts = ["INPUT.SIZE", "(32, 32)", "TRAINER.LINEAR_PROBE.PROTOCOL", "fixed"]
    return make_clip(os.path.join(work, "small-clip.pt"), kind="vit"), opts


def grid(work, weights, opts, a, mode, out, rates=None, seeds=None):
    """Wall seconds of sweep.sh in ``mode``; the accuracies of its runs by (trainer, loss, rate, seed)."""
    env = dict(os.environ, DATA=os.path.join(work, "data"), CLIP_WEIGHTS=weights, SEEDS=seeds or a.seeds,
               SHOTS=str(a.shots), OUT=out, PYTHON=sys.executable, TRAINERS=a.trainers, LOSSES=a.losses,
               RATES=rates or a.rates, NOISE_MODE=a.noise_mode, ENGINE=a.engine,
               PTNL_CACHE_DIR=os.path.join(work, "cache"), **MODES[mode])
    extra = ["OPTIM.MAX_EPOCH", str(a.epochs)] + opts
    if a.workers is not None:
        extra += ["DATALOADER.NUM_WORKERS", str(a.workers)]
    start = time.perf_counter()
    proc = subprocess.run(["bash", "scripts/ptnl/sweep.sh", "dtd", "vit_b32"] + extra, cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("sweep.sh ({}) failed:\n{}".format(mode, proc.stdout[-4000:]))
    accs = {}
    for path in glob.glob(os.path.join(out, "dtd", "**", "results.json"), recursive=True):
        with open(path) as f:
            r = json.load(f)
        accs[r["trainer"], r["loss"], r["noise"]["rate"], r["seed"]] = r["accuracy"]
    return seconds, accs


def main(argv=None):
    a = settings(argv)
    modes = a.modes.split()
    work = tempfile.mkdtemp(prefix="ptnl-bench-figure1-")
    try:
        weights, opts = make_data(work, a)
        warm = argparse.Namespace(**dict(vars(a), epochs=1, trainers="PTNL", losses="ce"))
        grid(work, weights, opts, warm, "separate", os.path.join(work, "out-warm-up"), rates="0.0", seeds="1")
        times, accs = {m: 0.0 for m in modes}, {m: {} for m in modes}
        # each mode runs the whole grid as one sweep.sh call (the grid is the unit: PACK trains it in
        # one process); with --rounds N the grid runs N times in each mode, the modes' order rotating
        # from round to round, so that a machine's drift falls on every mode alike
        for r in range(a.rounds):
            for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
                out = os.path.join(work, "out-{}-{}".format(mode, r))
                seconds, got = grid(work, weights, opts, a, mode, out)
                times[mode] += seconds
                print("  round {} {:9s} {:8.1f} s".format(r + 1, mode, seconds), flush=True)
                for key, acc in got.items():
                    accs[mode].setdefault(key, set()).add(acc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = len(accs[modes[0]])
    print("figure 1 grid: {} ({}), rates {}, seeds {}, {} classes, {} shots, {} noise, {} epochs, {} runs, {} "
          "(random weights), {}, warm feature cache".format(
              a.trainers, a.losses, a.rates, a.seeds, a.classes, a.shots, a.noise_mode, a.epochs, runs,
              a.arch, "CUDA" if _cuda() else "CPU"))
    names = {"separate": "separate processes (GROUP=0)", "grouped": "a process a group (PACK=0 STACK=0)",
             "packed": "one process (STACK=0)", "stacked": "one process, stacked"}
    base = times[modes[0]]
    for mode in modes:
        print("  {:30s}: {:8.1f} s   ({:.2f}x {})".format(names[mode], times[mode], base / times[mode], modes[0]))
    if "grouped" in times and "stacked" in times:
        print("  one process, stacked, against a process a group: {:.2f}x".format(times["grouped"] / times["stacked"]))
    keys = sorted(set().union(*(accs[m] for m in modes)), key=str)
    differ = {k: [sorted(accs[m].get(k, ())) for m in modes] for k in keys
              if len(set().union(*(accs[m].get(k, {None}) for m in modes))) > 1}
    same = runs > 0 and not differ
    print("  accuracies: {} runs, {}".format(runs, "identical in every mode" + (" and round" if a.rounds > 1 else "")
                                            if same else "DIFFERENT: " + "; ".join(
                                                "{}: {}".format(k, v) for k, v in differ.items())))
    return 0 if same else 1


def _cuda():
    import torch
    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
