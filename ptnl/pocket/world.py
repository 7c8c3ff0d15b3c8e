"""The pocket world's images and captions: procedurally drawn textures (a pattern, its colours,
its scale, the way it was photographed) and the alt-text a web page might give them.

Everything is a pure function of a seed. ``pretraining_batch(seed, step, n)`` is the image-caption
corpus the pocket CLIP learns from; ``make_dtd`` writes the downstream few-shot dataset in CoOp's
DTD layout from held-out random streams, with each class's own colour and distance habits (as a
dataset's curators have them) and harsher photography (foreshortening, lighting, blur, sensor
noise, clutter, JPEG) and the collection's own look: brown duotone prints (sepia) of photos whose
pattern still reads in such a print (``legible``).

Images are drawn a batch at a time: every function below works on [n, H, W] arrays, with one
parameter draw per image (shape [n, 1, 1]).
"""
import contextlib

import numpy as np

# ----------------------------------------------------------------------------- vocabulary
# The downstream dataset's classes: DTD words the captions use, chosen for the confusable
# groups real DTD has (stripes: banded / lined / striped / zigzagged; dots: dotted /
# polka-dotted / bubbly; lattices: chequered / grid / crosshatched / honeycombed; marbled).
DOWNSTREAM_CLASSES = [
    "banded", "bubbly", "chequered", "crosshatched", "dotted", "grid", "honeycombed", "lined",
    "marbled", "polka-dotted", "striped", "zigzagged",
]

# Other words a caption may use for the same pattern (alt-text is not written from a label list).
SYNONYMS = {
    "banded": ["bands of", "broad striped"], "bubbly": ["bubbles", "bubble"],
    "chequered": ["checkered", "checkerboard", "checked"], "crosshatched": ["cross-hatched", "hatched"],
    "dotted": ["dots", "speckled"], "grid": ["gridded", "square grid"], "honeycombed": ["honeycomb", "hexagonal"],
    "lined": ["thin lines", "ruled"], "marbled": ["marble"], "polka-dotted": ["polka dot", "polka dots"],
    "striped": ["stripes", "stripy"], "zigzagged": ["zigzag", "zig-zag", "chevron"],
    "spiralled": ["spiral", "spiraled"], "woven": ["weave", "basket weave"], "wrinkled": ["crumpled", "creased"],
    "swirly": ["swirls", "swirling"], "cracked": ["cracks", "crackled"], "veined": ["veins"],
    "blotchy": ["blotches", "mottled"], "scaly": ["scales", "fish scale"], "perforated": ["holes", "punched"],
    "studded": ["studs", "riveted"], "pleated": ["pleats", "folded"], "stratified": ["layered", "strata"],
    "meshed": ["mesh", "wire mesh"],
}

# Named colours of the captions (sRGB in [0, 1]); drawn with jitter.
COLOURS = {
    "red": (0.80, 0.12, 0.12), "orange": (0.95, 0.50, 0.10), "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.60, 0.20), "blue": (0.15, 0.30, 0.80), "purple": (0.50, 0.20, 0.65),
    "pink": (0.95, 0.55, 0.70), "brown": (0.50, 0.30, 0.15), "black": (0.08, 0.08, 0.08),
    "white": (0.94, 0.94, 0.92), "grey": (0.50, 0.50, 0.50), "beige": (0.85, 0.78, 0.62),
}
COLOUR_NAMES = list(COLOURS)
MATERIALS = ["fabric", "surface", "wallpaper", "tile", "paper", "cloth", "wall", "material", "carpet",
             "ceramic", "sheet", "textile"]
SIZES = {0: ["small", "fine", "tiny", "dense"], 1: ["medium", "regular"], 2: ["large", "big", "bold", "wide"]}

# Caption templates. {p} pattern, {c} a colour of the image, {c2} the other one, {s} size,
# {m} material. Short and long forms, so that words are seen at the positions where prompt
# learners put them (after 16 context tokens); half of them name no colour.
TEMPLATES = [
    "{p} texture.", "a {p} texture.", "a {p} pattern.", "a photo of a {p} texture.", "{p} {m}.",
    "this {m} is {p}.", "a {s} {p} pattern.", "a close-up photo of a {p} {m}.", "the {p} texture of a {m}.",
    "a blurry close-up photo of a {s} {p} texture on a {m}, seen from above.",
    "a low resolution photo of the {p} {m} of an old {m2}, taken indoors.",
    "my new {m} has a {s} {p} design and i really like it.",
    "{c} {p} texture.", "a {c} {p} texture.", "a photo of a {c} {p} {m}.", "a {s} {c} {p} pattern.",
    "a close-up photo of a {c} and {c2} {p} {m}.", "{p} {m} in {c}.", "a {p} pattern in {c} on a {c2} background.",
    "an image of a {p} {m}, mostly {c}.", "{c} and {c2}, {p}.", "{s} {p} texture, {c} on {c2}.",
]
# Alt-text that never names the pattern (some pages do not).
TEMPLATES_NO_PATTERN = ["a {c} {m}.", "a photo of a {c} and {c2} {m}.", "close-up of a {c} {m}.",
                        "{c} {m} texture."]
P_NO_PATTERN, P_SYNONYM = 0.06, 0.2

# ----------------------------------------------------------------------------- helpers
# The working float type. The pretraining corpus is drawn in float32 (fast; pretraining itself is
# not bit-reproducible across CPUs, which is why its weights are shipped). The downstream dataset
# is drawn in float64 (``make_dtd``), whose numpy results are the same bits whatever the SIMD
# level (float32 transcendentals are not: numpy dispatches them to AVX2 / AVX-512 kernels).
_F = np.float32


@contextlib.contextmanager
def _float_type(dtype):
    global _F
    saved, _F = _F, dtype
    try:
        yield
    finally:
        _F = saved


ZOOM = (1.1, 2.2)  # the camera's magnification range (pattern sizes below are in pixels at 1x)


def _soft(d, w=1.0):
    """Coverage of a shape from its signed distance ``d`` in pixels (negative inside)."""
    return np.clip(0.5 - d / w, 0.0, 1.0)


def _tri(t):
    """Distance of ``t`` to the nearest integer, in [0, 0.5]."""
    return np.abs(t - np.floor(t + 0.5))


def _hash(i, j, salt):
    """A pseudo-random number in [0, 1) per integer cell (i, j): cell jitter, per-line tones."""
    x = np.sin(i * 12.9898 + j * 78.233 + salt * 37.719) * 43758.5453
    return x - np.floor(x)


def _rot(X, Y, a):
    c, s = np.cos(a), np.sin(a)
    return X * c + Y * s, -X * s + Y * c


class _Draw:
    """Per-image random draws for a batch of n images: every value has shape [n, 1, 1]."""

    def __init__(self, rng, n):
        self.rng, self.n = rng, n

    def u(self, lo=0.0, hi=1.0):
        return self.rng.uniform(lo, hi, (self.n, 1, 1)).astype(_F)

    def normal(self, sd):
        return self.rng.normal(0, sd, (self.n, 1, 1)).astype(_F)

    def integers(self, lo, hi):
        return self.rng.integers(lo, hi, (self.n, 1, 1)).astype(_F)

    def size(self, lo, hi):
        """A scale in [lo, hi] and where it lies in that range (the caption's size word)."""
        s = self.u()
        return lo + (hi - lo) * s, s

    def field(self, X, Y, scale, k=6):
        """A smooth random field of about unit variance and wavelength ``scale`` pixels."""
        out = np.zeros(np.broadcast_shapes(X.shape, Y.shape), dtype=_F)
        for _ in range(k):
            a = self.u(0, np.pi)
            f = 2 * np.pi / (scale * self.u(0.6, 1.6))
            out += np.cos(f * (X * np.cos(a) + Y * np.sin(a)) + self.u(0, 2 * np.pi))
        return out * _F(np.sqrt(2.0 / k))


def _grid(n, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(_F)
    return np.broadcast_to(xx, (n, size, size)), np.broadcast_to(yy, (n, size, size))


# ----------------------------------------------------------------------------- patterns
# Each pattern maps warped pixel coordinates (X, Y) [n, H, W] to a foreground coverage in [0, 1]
# and returns (mask, size in [0, 1] per image).

def striped(d, X, Y):
    P, s = d.size(5, 16)
    duty = d.u(0.35, 0.6)
    return _soft((_tri(X / P + d.u()) - duty / 2) * P), s


def lined(d, X, Y):
    P, s = d.size(4, 14)
    w = np.minimum(d.u(0.7, 2.2), 0.3 * P)
    return _soft(_tri(X / P + d.u()) * P - w / 2), s


def banded(d, X, Y):
    P, s = d.size(14, 34)
    t = X / P + 0.25 * np.sin(2 * np.pi * X / (P * d.u(1.7, 2.9)) + d.u(0, 6.3)) + d.u()
    tone = 0.1 + 0.9 * _hash(np.floor(t), 0.0, d.u(0, 100))
    seam = _soft(0.8 - _tri(t) * P, 1.5)
    return np.clip(tone * (1 - 0.5 * seam) + 0.03 * d.field(X, Y, 6), 0, 1), s


def zigzagged(d, X, Y):
    P, s = d.size(5, 14)
    L = P * d.u(0.7, 1.6)
    A = P * d.u(0.4, 1.0)
    Xs = X + A * (4 * _tri(Y / L) - 1)
    duty = d.u(0.3, 0.55)
    slope = np.sqrt(1 + (4 * A / L) ** 2)  # distances along X are stretched on the slanted legs
    return _soft((_tri(Xs / P + d.u()) - duty / 2) * P / slope), s


def chequered(d, X, Y):
    P, s = d.size(4, 14)
    Py = P * d.u(0.85, 1.18)
    fx = np.clip(np.sin(np.pi * X / P) * P / np.pi / 0.7, -1, 1)
    fy = np.clip(np.sin(np.pi * Y / Py) * Py / np.pi / 0.7, -1, 1)
    return 0.5 + 0.5 * fx * fy, s


def grid(d, X, Y):
    P, s = d.size(5, 14)
    Py = P * d.u(0.8, 1.25)
    w = np.minimum(d.u(0.7, 2.4), 0.3 * P)
    dx = _tri(X / P + d.u()) * P
    dy = _tri(Y / Py + d.u()) * Py
    return np.maximum(_soft(dx - w / 2), _soft(dy - w / 2)), s


def crosshatched(d, X, Y):
    P, s = d.size(3.5, 8)
    gap = d.u(np.radians(55), np.radians(105))
    masks = []
    for sign in (1, -1):
        Xa, _ = _rot(X, Y, sign * gap / 2)
        w = d.u(0.5, 1.3)
        t = Xa / (P * d.u(0.85, 1.15)) + d.u()
        tone = 0.55 + 0.45 * _hash(np.floor(t + 0.5), 0.0, d.u(0, 100))  # hand-drawn strokes
        masks.append(tone * _soft(_tri(t) * P - w / 2))
    return np.maximum(*masks), s


def dotted(d, X, Y):
    P, s = d.size(4.5, 11)
    r, jit, salt = d.u(0.6, 1.6), d.u(0.0, 0.3), d.u(0, 100)
    i, j = np.floor(X / P), np.floor(Y / P)
    cx = (i + 0.5 + jit * (_hash(i, j, salt) - 0.5)) * P
    cy = (j + 0.5 + jit * (_hash(i, j, salt + 1) - 0.5)) * P
    rr = r * (0.75 + 0.5 * _hash(i, j, salt + 2))
    return _soft(np.hypot(X - cx, Y - cy) - rr), s


def polka_dotted(d, X, Y):
    P, s = d.size(9, 20)
    Py = P * d.u(0.8, 0.95)
    r = P * d.u(0.22, 0.35)
    j = np.floor(Y / Py)
    Xs = X + (j % 2) * P / 2
    i = np.floor(Xs / P)
    return _soft(np.hypot(Xs - (i + 0.5) * P, Y - (j + 0.5) * Py) - r), s


def bubbly(d, X, Y):
    scale, s = d.size(0.5, 1.5)
    n, H, W = X.shape
    xx, yy = _grid(n, H)
    m = np.zeros((n, H, W), dtype=_F)
    count = (d.integers(10, 22) / scale).astype(int)
    for k in range(int(count.max())):
        active = (k < count).astype(_F)
        r = scale * d.u(2.5, 9)
        cx, cy = d.u(-4, W + 4), d.u(-4, H + 4)
        dist = np.hypot(xx - cx, yy - cy)
        inside = _soft(dist - r) * active
        ring = _soft(np.abs(dist - r + 0.8) - 0.8)
        high = _soft(np.hypot(xx - cx + 0.35 * r, yy - cy + 0.35 * r) - 0.22 * r)
        m = m * (1 - inside) + np.maximum(0.25 + 0.75 * ring, high) * inside
    return m, s


def honeycombed(d, X, Y):
    S, s = d.size(5, 13)
    w = np.minimum(d.u(0.7, 2.2), 0.25 * S)
    rx, ry = S, S * np.sqrt(3)
    ax, ay = np.mod(X, rx) - rx / 2, np.mod(Y, ry) - ry / 2
    bx, by = np.mod(X - rx / 2, rx) - rx / 2, np.mod(Y - ry / 2, ry) - ry / 2
    use_a = ax * ax + ay * ay < bx * bx + by * by
    gx, gy = np.where(use_a, ax, bx), np.where(use_a, ay, by)
    dist = np.maximum(np.abs(gx), np.abs(gx) / 2 + np.abs(gy) * np.sqrt(3) / 2)
    return _soft((S / 2 - dist) - w / 2), s


def marbled(d, X, Y):
    P, s = d.size(10, 30)
    T = d.field(X, Y, d.u(16, 32)) + 0.3 * d.field(X, Y, d.u(6, 10))
    phase = 2 * np.pi * X / P + d.u(1.0, 2.5) * T
    gy, gx = np.gradient(phase, axis=(1, 2))
    dist = _tri(phase / np.pi) * np.pi / np.maximum(np.hypot(gx, gy), 1e-3)  # pixels to a vein
    vein = np.maximum(_soft(dist - d.u(0.4, 1.3)), 0.35 * np.exp(-dist / d.u(1.0, 3.0)))
    cloud = 0.15 * (1 + 0.5 * d.field(X, Y, 12))
    return np.clip(np.maximum(vein, cloud), 0, 1), s


def spiralled(d, X, Y):
    P, s = d.size(4, 11)
    n, H, W = X.shape
    xx, yy = _grid(n, H)
    cx, cy = d.u(0.2, 0.8) * W, d.u(0.2, 0.8) * H
    r = np.hypot(xx - cx, yy - cy)
    phi = np.arctan2(yy - cy, xx - cx)
    arms = d.integers(1, 5) * np.where(d.u() < 0.5, -1, 1)
    t = r / P + arms * phi / (2 * np.pi) + d.u()
    return _soft((_tri(t) - 0.25) * P), s


def woven(d, X, Y):
    P, s = d.size(6, 14)
    k = d.integers(2, 4)
    horiz = (np.floor(X / P) + np.floor(Y / P)) % 2 == 0
    th = 1 - (2 * _tri(Y / (P / k))) ** 2
    tv = 1 - (2 * _tri(X / (P / k))) ** 2
    gap = np.minimum(_tri(X / P), _tri(Y / P)) * P
    return np.where(horiz, th, tv) * (1 - 0.6 * _soft(gap - 0.5)), s


def wrinkled(d, X, Y):
    L, s = d.size(6, 18)
    h = sum(np.abs(d.field(X, Y, L * f)) * a for f, a in ((1.0, 1.0), (0.55, 0.5), (2.0, 0.7)))
    gy, gx = np.gradient(h, axis=(1, 2))
    a = d.u(0, 2 * np.pi)
    return np.clip(0.5 + (gx * np.cos(a) + gy * np.sin(a)) * d.u(1.0, 2.0), 0, 1), s


def swirly(d, X, Y):
    P, s = d.size(5, 12)
    Xw = X + d.u(6, 14) * d.field(X, Y, d.u(12, 24))
    Yw = Y + d.u(6, 14) * d.field(X, Y, d.u(12, 24))
    return _soft((_tri(np.hypot(Xw, Yw * 0.3) / P) - 0.25) * P), s


def _voronoi(X, Y, P, salt):
    """Distances to the nearest and second-nearest of jittered lattice points."""
    i0, j0 = np.floor(X / P), np.floor(Y / P)
    d1 = np.full(X.shape, 1e9, dtype=_F)
    d2 = np.full(X.shape, 1e9, dtype=_F)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            i, j = i0 + di, j0 + dj
            dist = np.hypot(X - (i + _hash(i, j, salt)) * P, Y - (j + _hash(i, j, salt + 1)) * P)
            d2 = np.minimum(d2, np.maximum(d1, dist))
            d1 = np.minimum(d1, dist)
    return d1, d2


def cracked(d, X, Y):
    P, s = d.size(8, 22)
    d1, d2 = _voronoi(X + 2 * d.field(X, Y, 8), Y, P, d.u(0, 100))
    return _soft((d2 - d1) - d.u(0.6, 1.6)), s


def veined(d, X, Y):
    L, s = d.size(12, 30)
    f1, f2 = d.field(X, Y, L), d.field(X, Y, L * 0.5)
    return np.maximum(_soft(np.abs(f1) * L / 3 - 0.6), 0.6 * _soft(np.abs(f2) * L / 4 - 0.4)), s


def blotchy(d, X, Y):
    L, s = d.size(8, 24)
    f = d.field(X, Y, L) + 0.4 * d.field(X, Y, L / 3)
    return 0.5 + 0.5 * np.tanh(3 * (f - d.u(-0.4, 0.4))), s


def scaly(d, X, Y):
    P, s = d.size(6, 14)
    Py = P * 0.5
    j = np.floor(Y / Py)
    Xs = X + (j % 2) * P / 2
    i = np.floor(Xs / P)
    dist = np.hypot(Xs - (i + 0.5) * P, Y - (j + 1) * Py)
    R = P * 0.62
    return np.clip(_soft(np.abs(dist - R) - 0.6) + 0.5 * (dist / R) ** 2, 0, 1), s


def perforated(d, X, Y):
    P, s = d.size(5, 12)
    r = P * d.u(0.12, 0.25)
    i, j = np.floor(X / P), np.floor(Y / P)
    return 1 - _soft(np.hypot(X - (i + 0.5) * P, Y - (j + 0.5) * P) - r), s


def studded(d, X, Y):
    P, s = d.size(6, 14)
    r = P * d.u(0.25, 0.35)
    i, j = np.floor(X / P), np.floor(Y / P)
    dist = np.hypot(X - (i + 0.5) * P, Y - (j + 0.5) * P)
    dome = np.sqrt(np.clip(1 - (dist / r) ** 2, 0, 1))
    return np.clip(0.35 * _soft(dist - r) + 0.65 * dome ** 3, 0, 1), s


def pleated(d, X, Y):
    P, s = d.size(5, 14)
    t = X / P + 0.1 * d.field(X, Y, 30) + d.u()
    f = t - np.floor(t)
    return np.where(f < 0.7, f / 0.7, (1 - f) / 0.3) ** 1.3, s


def stratified(d, X, Y):
    P, s = d.size(3, 9)
    t = X / P + 1.5 * d.field(X, Y, 40) + 0.3 * d.field(X, Y, 9)
    tone = 0.1 + 0.9 * _hash(np.floor(t), 0.0, d.u(0, 100))
    return np.clip(tone + 0.05 * d.field(X, Y, 3), 0, 1), s


def meshed(d, X, Y):
    P, s = d.size(3.5, 8)
    w = d.u(0.6, 1.1)
    X1, Y1 = _rot(X, Y, np.pi / 4)
    dist = np.minimum(_tri(X1 / P), _tri(Y1 / P)) * P
    return _soft(dist - w / 2) * (0.7 + 0.3 * d.field(X, Y, 20) ** 2), s


# name -> (renderer, orientation prior: "any", "axis" (mostly aligned with the frame) or
# "diagonal").
PATTERNS = {
    "banded": (banded, "any"), "bubbly": (bubbly, "any"), "chequered": (chequered, "axis"),
    "crosshatched": (crosshatched, "diagonal"), "dotted": (dotted, "axis"), "grid": (grid, "axis"),
    "honeycombed": (honeycombed, "any"), "lined": (lined, "any"), "marbled": (marbled, "any"),
    "polka-dotted": (polka_dotted, "axis"), "striped": (striped, "any"), "zigzagged": (zigzagged, "axis"),
    "spiralled": (spiralled, "any"), "woven": (woven, "axis"), "wrinkled": (wrinkled, "any"),
    "swirly": (swirly, "any"), "cracked": (cracked, "any"), "veined": (veined, "any"),
    "blotchy": (blotchy, "any"), "scaly": (scaly, "axis"), "perforated": (perforated, "axis"),
    "studded": (studded, "axis"), "pleated": (pleated, "any"), "stratified": (stratified, "axis"),
    "meshed": (meshed, "axis"),
}
PATTERN_NAMES = list(PATTERNS)
assert set(DOWNSTREAM_CLASSES) <= set(PATTERNS)


# ----------------------------------------------------------------------------- colour and camera
def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, [n] arrays -> [n, 3]."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(len(h))]


def named_colours(rng, names):
    base = np.array([COLOURS[c] for c in names], dtype=_F).reshape(-1, 3)
    return np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(_F)


def nearest_colour_names(rgb):
    """The palette word a caption writer would use for each colour [n, 3]: the nearest one."""
    palette = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=_F)
    dist = ((np.asarray(rgb, dtype=_F)[:, None, :] - palette[None]) ** 2).sum(-1)
    return [COLOUR_NAMES[k] for k in dist.argmin(1)]


def free_colours(rng, n):
    """Any colours (the downstream photos are not limited to the caption palette): a quarter
    neutrals, the rest any hue."""
    rgb = _hsv_to_rgb(rng.uniform(size=n), rng.uniform(0.3, 1.0, n), rng.uniform(0.25, 1.0, n))
    grey = np.repeat(rng.uniform(0.05, 0.95, (n, 1)), 3, axis=1) + rng.normal(0, 0.02, (n, 3))
    return np.clip(np.where(rng.uniform(size=(n, 1)) < 0.25, grey, rgb), 0, 1).astype(_F)


def _coords(d, size, axis, photo, zoom_range=ZOOM):
    """Pixel coordinates seen through a random camera: zoom, rotation (by the pattern's prior),
    aspect, shear, foreshortening and a smooth wobble (cloth, hand-made patterns). Also returns
    where the zoom lies in its range."""
    xx, yy = _grid(d.n, size)
    X, Y = xx - size / 2 + d.u(-50, 50), yy - size / 2 + d.u(-50, 50)
    zoom = np.exp(d.u(np.log(zoom_range[0]), np.log(zoom_range[1])))
    X, Y = X / zoom, Y / zoom
    quarter = np.where(d.u() < 0.5, np.pi / 2, 0.0).astype(_F)
    if axis == "axis":
        a = d.normal(np.radians(8)) + quarter
    elif axis == "diagonal":
        a = np.pi / 4 + d.normal(np.radians(12)) + quarter
    else:
        a = d.u(0, np.pi)
    X, Y = _rot(X, Y, a)
    X = X * d.u(0.85, 1.18) + Y * d.normal(0.08)
    g = 1 + d.normal(0.25 if photo else 0.1) / size * (yy - size / 2)
    X, Y = X * g, Y * g
    wob = d.u(0, 2.5 if photo else 1.5)
    X = X + wob * d.field(X, Y, d.u(15, 40), k=3)
    Y = Y + wob * d.field(X, Y, d.u(15, 40), k=3)
    return X.astype(_F), Y.astype(_F), (np.log(zoom) - np.log(ZOOM[0])) / np.log(ZOOM[1] / ZOOM[0])


def _blur(img, sigma):
    """Gaussian blur of [n, H, W, 3] images, one sigma (at most 1) per image."""
    taps = np.arange(-2, 3, dtype=_F)
    k = np.exp(-0.5 * (taps[None, :] / np.maximum(sigma.reshape(-1, 1), 1e-3)) ** 2)
    k = (k / k.sum(1, keepdims=True)).reshape(-1, 5, 1, 1, 1).astype(_F)
    H, W = img.shape[1:3]
    pad = np.pad(img, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    tmp = sum(k[:, o] * pad[:, :, o:o + W] for o in range(5))
    return sum(k[:, o] * tmp[:, o:o + H] for o in range(5))


# The collection's print: luminance 0 is printed in the ink's colour, 1 in the paper's.
PRINT_INK, PRINT_PAPER = (0.25, 0.12, 0.02), (1.0, 0.85, 0.55)


def sepia(img, amount):
    """``img`` [n, H, W, 3] in [0, 1] as an old sepia print of strength ``amount`` [n] (0: as is):
    a brown duotone, its luminance printed from a dark brown ink (``PRINT_INK``) to a yellowed
    paper (``PRINT_PAPER``)."""
    a = np.asarray(amount, dtype=_F).reshape(-1, 1, 1, 1)
    grey = (img * np.array([0.299, 0.587, 0.114], dtype=_F)).sum(-1, keepdims=True)
    ink, paper = np.array(PRINT_INK, dtype=_F), np.array(PRINT_PAPER, dtype=_F)
    target = ink + grey * (paper - ink)
    return np.clip(img + a * (target - img), 0, 1)


def _camera(d, img, strength):
    """Lighting gradient, vignette, shading, colour cast, contrast, blur and sensor noise;
    ``strength`` [n, 1, 1]."""
    n, H, W, _ = img.shape
    xx, yy = _grid(n, H)
    u, v = xx / W - 0.5, yy / H - 0.5
    a = d.u(0, 2 * np.pi)
    light = 1 + strength * d.u(0, 0.35) * (u * np.cos(a) + v * np.sin(a)) * 2
    light -= strength * d.u(0, 0.3) * (u * u + v * v) * 2
    light += strength * 0.08 * d.field(xx, yy, d.u(20, 60), k=3)
    cast = 1 + d.rng.normal(0, 1, (n, 1, 1, 3)).astype(_F) * 0.06 * strength[..., None]
    img = img * light[..., None] * cast
    mean = img.mean(axis=(1, 2, 3), keepdims=True)
    img = img + (strength * d.u(0, 0.3))[..., None] * (mean - img)
    img = _blur(img, d.u(0, 0.8) * strength)
    sd = d.u(0.004, 0.005) + 0.03 * strength * d.u()
    img = img + d.rng.standard_normal(img.shape, dtype=_F) * sd[..., None]
    return np.clip(img, 0, 1)


def draw(rng, pattern, n, size, photo=False, fg=None, bg=None, camera=True, zoom_range=ZOOM):
    """``n`` images of ``pattern``: float32 [n, size, size, 3] in [0, 1], and their size words
    (0 small, 1 medium, 2 large). ``fg``, ``bg``: the colours [n, 3] of the pattern and of its
    ground (free colours where None). ``photo``: the downstream photographs' camera (harsher, and
    a quarter of them with clutter), else a gentler one of random strength; ``camera`` False: the
    images as they lie, before any camera. ``zoom_range``: the camera's magnification range."""
    d = _Draw(rng, n)
    fn, axis = PATTERNS[pattern]
    X, Y, z = _coords(d, size, axis, photo, zoom_range)
    mask, s = fn(d, X, Y)
    s = (s + z) / 2  # the apparent size: the pattern's own scale and the camera's zoom
    mask = np.broadcast_to(mask, (n, size, size))[..., None].astype(_F)
    fg = free_colours(rng, n) if fg is None else np.asarray(fg, dtype=_F)
    bg = free_colours(rng, n) if bg is None else np.array(bg, dtype=_F)
    close = np.abs(fg - bg).sum(1) < 0.45
    bg[close] = np.clip(1.0 - fg[close], 0, 1)  # too alike to see the pattern: the opposite ground
    img = bg[:, None, None] * (1 - mask) + fg[:, None, None] * mask
    if photo:  # clutter: a quarter of the photos have something else covering part of the view
        img = _clutter(d, img, size)
        strength = np.ones((n, 1, 1), dtype=_F)
    else:
        strength = d.u(0.2, 0.7)
    if camera:
        img = _camera(d, img, strength)
    return img.astype(_F), np.minimum(2, (s.reshape(-1) * 3).astype(int))


def _clutter(d, img, size):
    n = d.n
    xx, yy = _grid(n, size)
    on = (d.u() < 0.25).astype(_F)
    cx, cy, r = d.u(-0.2, 1.2) * size, d.u(-0.2, 1.2) * size, d.u(0.2, 0.45) * size
    cover = (on * _soft(np.hypot((xx - cx) * d.u(0.6, 1.6), yy - cy) - r, 2.0))[..., None]
    other = np.broadcast_to(free_colours(d.rng, n)[:, None, None], img.shape).copy()
    textured = np.flatnonzero((d.u() < 0.5).reshape(-1) & (on.reshape(-1) > 0))
    for k in textured:  # some clutter is another texture
        other[k] = draw(d.rng, PATTERN_NAMES[d.rng.integers(len(PATTERN_NAMES))], 1, size)[0][0]
    return img * (1 - cover) + other * cover


# ----------------------------------------------------------------------------- captions
def _articles(text):
    words = text.split(" ")
    for k in range(len(words) - 1):
        if words[k] in ("a", "an"):
            words[k] = "an" if words[k + 1][:1] in "aeiou" else "a"
    return " ".join(words)


def caption(rng, pattern, fg, bg, size_word):
    """Alt-text for an image of ``pattern`` in colours ``fg`` on ``bg`` (palette names)."""
    word = pattern
    if rng.uniform() < P_SYNONYM:
        word = SYNONYMS[pattern][rng.integers(len(SYNONYMS[pattern]))]
    if rng.uniform() < P_NO_PATTERN:
        template = TEMPLATES_NO_PATTERN[rng.integers(len(TEMPLATES_NO_PATTERN))]
    else:
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
    c, c2 = (fg, bg) if "{c2}" in template or rng.uniform() < 0.7 else (bg, fg)
    sizes = SIZES[int(size_word)]
    m, m2 = rng.choice(MATERIALS, 2, replace=False)
    return _articles(template.format(p=word, c=c, c2=c2, s=sizes[rng.integers(len(sizes))], m=m, m2=m2))


def pretraining_batch(seed, step, n, size):
    """Batch ``step`` of the pretraining corpus: uint8 images [n, size, size, 3] and n captions.
    Patterns uniformly drawn; half the images in palette colours, half in any colours (captioned
    with the nearest palette word); 40% through the photographs' camera."""
    rng = np.random.default_rng([seed, 1, step])
    patterns = rng.integers(len(PATTERN_NAMES), size=n)
    photo = rng.uniform(size=n) < 0.4
    pair = np.stack([rng.choice(len(COLOUR_NAMES), 2, replace=False) for _ in range(n)])
    fg = named_colours(rng, [COLOUR_NAMES[c] for c in pair[:, 0]])
    bg = named_colours(rng, [COLOUR_NAMES[c] for c in pair[:, 1]])
    free = rng.uniform(size=(n, 1)) < 0.5
    fg, bg = np.where(free, free_colours(rng, n), fg), np.where(free, free_colours(rng, n), bg)
    images = np.empty((n, size, size, 3), dtype=_F)
    size_words = np.zeros(n, dtype=int)
    for p, name in enumerate(PATTERN_NAMES):
        for ph in (False, True):
            idx = np.flatnonzero((patterns == p) & (photo == ph))
            if len(idx):
                images[idx], size_words[idx] = draw(rng, name, len(idx), size, photo=ph, fg=fg[idx], bg=bg[idx],
                                                    camera=False)
    d = _Draw(rng, n)
    strength = np.where(photo.reshape(-1, 1, 1), 1.0, d.u(0.2, 0.7)).astype(_F)
    images = (_camera(d, images, strength) * 255 + 0.5).astype(np.uint8)
    fg_names, bg_names = nearest_colour_names(fg), nearest_colour_names(bg)
    texts = [caption(rng, PATTERN_NAMES[patterns[k]], fg_names[k], bg_names[k], size_words[k]) for k in range(n)]
    return images, texts


# ----------------------------------------------------------------------------- downstream dataset
def class_style(seed, label):
    """How the downstream dataset's curators happened to photograph a class: a typical hue (for
    60% of its photos) and a typical camera distance, drawn at random per class. Zero-shot prompts
    know nothing of it; a few labelled shots show it."""
    rng = np.random.default_rng([seed, 3, label])
    zoom = np.exp(rng.uniform(np.log(ZOOM[0] * 1.15), np.log(ZOOM[1] / 1.15)))
    return {"hue": rng.uniform(), "share": 0.6, "zoom_range": (zoom / 1.15, zoom * 1.15)}


def styled_colours(rng, style):
    """(fg, bg) [1, 3] of one photo: near the class's hue on a neutral or free ground, or free;
    the ground made ``legible`` against the pattern."""
    if rng.uniform() >= style["share"]:
        fg, bg = free_colours(rng, 1), free_colours(rng, 1)
        return fg, legible(fg, bg)
    hue = (style["hue"] + rng.normal(0, 0.04)) % 1.0
    fg = _hsv_to_rgb(np.array([hue]), rng.uniform(0.35, 1.0, 1), rng.uniform(0.3, 1.0, 1)).astype(_F)
    if rng.uniform() < 0.5:
        bg = np.full((1, 3), 0.9 if fg.mean() < 0.5 else 0.12, dtype=_F) + rng.normal(0, 0.05, (1, 3)).astype(_F)
    else:
        bg = free_colours(rng, 1)
    return fg, legible(fg, np.clip(bg, 0, 1).astype(_F))


# Luminance weights, and the least luminance difference between a photo's pattern and its ground.
LUMA = np.array([0.299, 0.587, 0.114])
LEGIBLE = 0.3


def legible(fg, bg, contrast=LEGIBLE):
    """The curators' habit of keeping only photos whose pattern still reads in the collection's
    monochrome print (``sepia``), which keeps luminance alone: ``bg`` [1, 3] moved towards black
    (a light pattern) or white (a dark one) until its luminance differs from ``fg``'s by at least
    ``contrast``. Like a real dataset's curators, who keep the photos where the texture shows, it
    leaves the features room to learn from; no random draw."""
    # summed term by term (not a BLAS dot product): the same bits on every CPU
    yf, yb = (float(sum(c[0, k] * LUMA[k] for k in range(3))) for c in (fg, bg))
    if abs(yf - yb) >= contrast:
        return bg
    target = 0.0 if yf > 0.5 else 1.0
    want = yf - contrast if yf > 0.5 else yf + contrast
    a = (want - yb) / (target - yb) if target != yb else 0.0
    return np.clip(bg + a * (target - bg), 0, 1).astype(_F)


# The downstream collection's own look, which no caption of the pretraining corpus describes: its
# photos were printed and scanned as brown duotones (``sepia``), at a strength drawn per photo in
# this range, nearly all the way: the colours the captions name are gone and every photo is cast in
# the same browns. The zero-shot prompt knows nothing of it (it cost zero-shot accuracy about 10
# points); a learned prompt adapts to it, as CoOp's prompts adapt to a real dataset's acquisition,
# because the curators kept the photos whose pattern still reads in print (``legible``), so the
# look hides little of what tells the classes apart.
SEPIA = (0.85, 1.0)


def make_dtd(root, classes=DOWNSTREAM_CLASSES, per_class=100, size=64, seed=0, quality=(70, 95), sepia=SEPIA):
    """Write the downstream few-shot dataset in CoOp's DTD layout: ``<root>/dtd/images/<class>/
    <class>_NNNN.jpg`` (photographed textures with each class's own style, ``class_style``, the
    collection's ``sepia`` range (None: none); sides between ``size`` and 1.5 ``size``; JPEG) and
    ``split_zhou_DescribableTextures.json`` with CoOp's 50/20/30 cut. Its random streams are
    disjoint from the pretraining corpus's; drawn in float64, the same bytes on every CPU. Returns
    the dataset folder."""
    with _float_type(np.float64):
        return _write_dtd(root, classes, per_class, size, seed, quality, sepia)


def _write_dtd(root, classes, per_class, size, seed, quality, sepia_range):
    from PIL import Image
    from ptnl.data.splits import write_dtd_layout
    styles = {}

    def photo(label, name, i):
        style = styles.setdefault(label, class_style(seed, label))
        rng = np.random.default_rng([seed, 2, label, i])
        side = int(rng.integers(size, size * 3 // 2 + 1))
        fg, bg = styled_colours(rng, style)
        img, _ = draw(rng, name, 1, side, photo=True, fg=fg, bg=bg, zoom_range=style["zoom_range"])
        if sepia_range:
            img = sepia(img, rng.uniform(sepia_range[0], sepia_range[1], 1))
        image = Image.fromarray((img[0] * 255 + 0.5).astype(np.uint8))
        return image, {"quality": int(rng.integers(quality[0], quality[1] + 1))}

    return write_dtd_layout(root, sorted(classes), per_class, photo)
