"""Shared pieces of the benchmarks: the real CLIP architectures at random initialisation
(speed does not depend on weight values), peak memory of a child process, timing."""
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# OpenAI CLIP hyper-parameters (as clip.model.build_model infers them from the released weights)
ARCHS = {
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=512,
                 transformer_heads=8, transformer_layers=12),
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, context_length=77, vocab_size=49408, transformer_width=512,
                     transformer_heads=8, transformer_layers=12),
}


def random_clip(arch, seed=0):
    """A CLIP of the named architecture with random weights, fp32, eval mode."""
    import torch
    from clip.model import CLIP
    torch.manual_seed(seed)
    model = CLIP(**ARCHS[arch]).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def class_names(n, seed=0):
    """``n`` class names of 1 to 3 common words (about ImageNet's token lengths)."""
    import random
    words = ("red fox bird house cat dog car tree boat plane fish snake lizard frog shark whale "
             "golden spotted striped small large wild desert mountain river sea bear owl hawk").split()
    rng = random.Random(seed)
    return ["_".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(n)]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(module, args):
    """Run ``python -m benchmarks.<module> --child ...`` and return its JSON line."""
    out = subprocess.run([sys.executable, "-m", "benchmarks." + module, "--child"] + [str(a) for a in args],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, repeat):
    """Median wall time of ``fn()`` over ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def make_bench(work, arch="ViT-B/32", classes=47, per_class=14):
    """The bench under ``work``: ``data/`` (a generated DTD-layout dataset of ``classes`` classes,
    ``per_class`` 256-px images each) and ``clip.pt`` (``arch`` at random init, fp16 as a release);
    returns the weights path."""
    import torch
    from ptnl.data.generated import make_dtd
    make_dtd(os.path.join(work, "data"), num_classes=classes, per_class=per_class, size=256)
    weights = os.path.join(work, "clip.pt")
    torch.save(random_clip(arch).half().state_dict(), weights)
    return weights
