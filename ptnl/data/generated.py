"""Small stand-ins for what cannot be downloaded: a DTD-layout texture dataset on disk and a small
CLIP weights file built with the real ``clip.model`` classes. For tests and the offline demo.

    python -m ptnl.data.generated --root DATA --clip weights.pt [--classes 6 --per-class 40]
"""
import argparse

import numpy as np
from PIL import Image

from ptnl.clip.small import save_small_clip
from ptnl.data.splits import write_dtd_layout

DTD_CLASSES = [
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
    "crosshatched", "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy",
    "grid", "grooved", "honeycombed", "interlaced", "knitted", "lacelike", "lined", "marbled",
    "matted", "meshed", "paisley", "perforated", "pitted", "pleated", "polka-dotted", "porous",
    "potholed", "scaly", "smeared", "spiralled", "sprinkled", "stained", "stratified", "striped",
    "studded", "swirly", "veined", "waffled", "woven", "wrinkled", "zigzagged",
]


def texture_image(label, index, size=40, seed=0):
    """A striped texture whose orientation, frequency and colour depend on the class, with
    per-image phase, jitter and noise."""
    rng = np.random.default_rng([seed, label, index])
    angle = np.pi * (label * 0.618 % 1.0) + rng.normal(0, 0.08)
    freq = 2 + (label * 7 % 5) + rng.normal(0, 0.2)
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.3))
    base = np.array([(label * 53) % 255, (label * 101) % 255, (label * 197) % 255]) / 255.0
    img = 0.5 + 0.35 * wave[..., None] * (0.4 + base) + rng.normal(0, 0.08, (size, size, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def make_dtd(root, num_classes=6, per_class=40, size=40, seed=0, write_split=True):
    """Write ``<root>/dtd/images/<class>/<class>_NNNN.jpg`` and (optionally) CoOp's split file
    with the 50/20/30 cut. Returns the dataset folder."""
    if num_classes > len(DTD_CLASSES):
        raise ValueError("at most {} classes".format(len(DTD_CLASSES)))
    return write_dtd_layout(root, DTD_CLASSES[:num_classes], per_class,
                            lambda label, name, i: (texture_image(label, i, size, seed), {"quality": 90}),
                            write_split=write_split)


def make_clip(path, kind="vit", image_resolution=32, seed=0):
    """Save a small randomly initialised CLIP state dict to ``path``."""
    return save_small_clip(path, kind, image_resolution=image_resolution, seed=seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="dataset root to write dtd/ into")
    p.add_argument("--clip", help="also write a small CLIP weights file here")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--size", type=int, default=40)
    a = p.parse_args(argv)
    print(make_dtd(a.root, a.classes, a.per_class, a.size))
    if a.clip:
        print(make_clip(a.clip))


if __name__ == "__main__":
    main()
