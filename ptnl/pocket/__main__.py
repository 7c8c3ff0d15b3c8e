"""python -m ptnl.pocket [--cache DIR] [--field NAME ...]: build the pocket world (or find it built)
and print its weights file, the dataset root to pass as --root, and its zero-shot accuracy.
``--field`` prints only the named values, one a line (for scripts); build progress goes to stderr."""
import argparse

from ptnl.pocket import build

FIELDS = ("weights", "root", "resolution", "zero_shot_accuracy", "chance", "folder", "tag")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ptnl.pocket", description=__doc__)
    p.add_argument("--cache", help="cache root (default: PTNL_CACHE_DIR or ~/.cache/ptnl)")
    p.add_argument("--field", nargs="+", choices=FIELDS, help="print only these values, one a line")
    a = p.parse_args(argv)
    m = build(a.cache)
    if a.field:
        for name in a.field:
            print(m[name])
        return
    print("Pocket world {} in {}".format(m["tag"], m["folder"]))
    print("weights:  {}  ({:.1f} MB; MODEL.BACKBONE.NAME pocket; INPUT.SIZE \"({r}, {r})\")".format(
        m["weights"], m["weights_bytes"] / 1e6, r=m["resolution"]))
    print("--root:   {}  (DATASET.NAME DescribableTextures, {} classes)".format(m["root"], len(m["classes"])))
    print("zero-shot test accuracy: {:.1f}% with \"{}\" (chance {:.1f}%)".format(
        m["zero_shot_accuracy"], m["template"], m["chance"]))
    print("built in {:.0f}s".format(m["build_seconds"]))


if __name__ == "__main__":
    main()
