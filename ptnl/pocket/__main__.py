"""python -m ptnl.pocket [--cache DIR] [--field NAME ...]: generate the pocket dataset (or find it)
and print the shipped weights file, the dataset root to pass as --root, and the zero-shot accuracy.
``--field`` prints only the named values, one a line (for scripts); progress goes to stderr.

python -m ptnl.pocket --rebuild [--out DIR] [--steps N] [--ship]: run the pretraining recipe again
(about 10 minutes on 2 CPU cores) and compare the rebuilt model's zero-shot accuracy with the
shipped one's; exit status 1 when they differ by more than the tolerance. ``--ship`` (maintainers)
makes the rebuilt weights the package's.

--vit: the same for the ViT variant (MODEL.BACKBONE.NAME pocket-vit: the same dataset and text
tower, a ViT image tower); its weights are the full CLIP written into the cache, its rebuild
pretrains only the image tower."""
import argparse
import sys
import tempfile

from ptnl.pocket import REBUILD_TOLERANCE, VIT_NAME, build, build_vit, rebuild

FIELDS = ("weights", "root", "resolution", "zero_shot_accuracy", "chance", "folder", "tag")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ptnl.pocket", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", help="cache root (default: PTNL_CACHE_DIR or ~/.cache/ptnl)")
    p.add_argument("--field", nargs="+", choices=FIELDS, help="print only these values, one a line")
    p.add_argument("--rebuild", action="store_true", help="pretrain the pocket CLIP again by its recipe")
    p.add_argument("--out", help="with --rebuild: where to write it (default: a new temporary folder)")
    p.add_argument("--steps", type=int, help="with --rebuild: pretraining steps (default: the recipe's)")
    p.add_argument("--ship", action="store_true", help="with --rebuild: replace the package's weights and record")
    p.add_argument("--vit", action="store_true", help="the ViT variant (MODEL.BACKBONE.NAME {})".format(VIT_NAME))
    a = p.parse_args(argv)
    if a.rebuild:
        out = a.out or tempfile.mkdtemp(prefix="pocket-rebuild-")
        r = rebuild(out, steps=a.steps, ship=a.ship, vit=a.vit)
        print("Rebuilt in {} ({:.0f}s of pretraining, final loss {:.3f})".format(
            out, r["pretraining"]["seconds"], r["pretraining"]["final_loss"]))
        shipped_acc = r["shipped_zero_shot_accuracy"]
        print("zero-shot test accuracy: rebuilt {:.2f}%, shipped {}".format(
            r["zero_shot_accuracy"], "{:.2f}%".format(shipped_acc) if shipped_acc is not None else "none"))
        if a.ship:
            print("shipped: the package's {0}.pt and {0}.json are now these".format(VIT_NAME if a.vit else "pocket"))
        elif shipped_acc is not None and abs(r["zero_shot_accuracy"] - shipped_acc) > REBUILD_TOLERANCE:
            print("The rebuilt model differs from the shipped one by more than {} points: the recipe or the "
                  "generator has changed since the weights were shipped.".format(REBUILD_TOLERANCE))
            sys.exit(1)
        return
    m = build_vit(a.cache) if a.vit else build(a.cache)
    if a.field:
        for name in a.field:
            print(m[name])
        return
    print("Pocket world {} in {}".format(m["tag"], m["folder"]))
    print("weights:  {}  ({:.1f} MB, {}; MODEL.BACKBONE.NAME {}; INPUT.SIZE \"({r}, {r})\")".format(
        m["weights"], m["weights_bytes"] / 1e6, "made from the shipped towers" if a.vit else "shipped with ptnl",
        VIT_NAME if a.vit else "pocket", r=m["resolution"]))
    print("--root:   {}  (DATASET.NAME DescribableTextures, {} classes)".format(m["root"], len(m["classes"])))
    print("zero-shot test accuracy: {:.2f}% with \"{}\" (chance {:.1f}%)".format(
        m["zero_shot_accuracy"], m["template"], m["chance"]))
    if m["built_now"] and not a.vit:
        print("dataset generated in {:.0f}s".format(m["build_seconds"]))


if __name__ == "__main__":
    main()
