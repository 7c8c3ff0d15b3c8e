"""(b) Evaluating a second run on the same test split vs the first: the first encodes every test
image (and caches the features); the second, a fresh trainer that finds only what is on disk,
reads them and multiplies them by its text features, computed once. Real architecture, random weights.

    python -m benchmarks.evaluation [--arch RN50] [--classes 47] [--per-class 20]
"""
import argparse
import os
import shutil
import tempfile
import time

from benchmarks.common import random_clip


def build_trainer(root, weights, out, cache_on):
    from ptnl import compat
    from ptnl.config import extend_cfg
    import datasets  # noqa: F401
    import trainers.ptnl  # noqa: F401
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file("configs/trainers/PTNL/rn50.yaml")
    cfg.merge_from_list(["DATASET.ROOT", root, "DATASET.NAME", "DescribableTextures", "DATASET.NUM_SHOTS", 1,
                         "SEED", 1, "TRAINER.NAME", "PTNL", "MODEL.BACKBONE.NAME", weights, "OUTPUT_DIR", out,
                         "DATALOADER.NUM_WORKERS", 2, "TRAINER.PTNL.CACHE_FEATURES", cache_on,
                         "TRAINER.PTNL.DECODE_CACHE_MB", 0, "VERBOSE", False])
    cfg.freeze()
    compat.set_random_seed(1)
    return compat.build_trainer(cfg)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="RN50")
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--per-class", type=int, default=20, help="images per class (30%% are test images)")
    a = p.parse_args(argv)
    import contextlib
    import io

    import torch
    from ptnl.data.generated import make_dtd
    work = tempfile.mkdtemp(prefix="ptnl-bench-eval-")
    os.environ["PTNL_CACHE_DIR"] = os.path.join(work, "cache")
    make_dtd(os.path.join(work, "data"), num_classes=a.classes, per_class=a.per_class, size=256)
    weights = os.path.join(work, "clip.pt")
    torch.save(random_clip(a.arch).half().state_dict(), weights)
    from ptnl.clip import weights as zeroshot_weights
    times = {}
    try:
        for name, cache_on in (("uncached", "False"), ("first", "True"), ("second", "True")):
            zeroshot_weights._DIGESTS.clear()  # as in a new process: only what is on disk is reused
            with contextlib.redirect_stdout(io.StringIO()):
                t = build_trainer(os.path.join(work, "data"), weights, os.path.join(work, name), cache_on)
                start = time.perf_counter()
                acc = t.test()
                times[name] = (time.perf_counter() - start, acc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(t.dm.dataset.test)
    print("evaluation of {} test images, {} classes, {} (random weights), CPU".format(n, a.classes, a.arch))
    for name, (sec, acc) in times.items():
        print("  {:<9} {:8.2f} s   accuracy {:.2f}%".format(name, sec, acc))
    print("second run vs first: {:.1f}x faster; vs uncached: {:.1f}x; accuracies equal: {}".format(
        times["first"][0] / times["second"][0], times["uncached"][0] / times["second"][0],
        len({round(v[1], 6) for v in times.values()}) == 1))


if __name__ == "__main__":
    main()
