"""Per-iteration time and peak GPU memory of PTNL prompt tuning on a CUDA machine: RN50 and
ViT-B/32 (random weights), 47 and 1000 classes, fp16 and fp32, the text encoder on all 77
positions, truncated, and truncated with the shared prefix computed once.

    python -m benchmarks.cuda_iteration [--batch 32] [--iters 20]

One iteration = image encoder forward (frozen) + prompt learner + text encoder forward and
backward + SGD step, at batch 32 and 224 px, as in training. Grouped runs (``train.py --group``):
one iteration of a 5-member group (the image encoder once, then each member's prompt learner, text
encoder and step) against 5 lone iterations. ``--device cpu`` runs the same on the CPU (slow).
"""
import argparse

from benchmarks.common import ARCHS, class_names, random_clip


def _sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(step, dev, iters):
    """(ms per call of ``step``, peak MB: CUDA's allocator, or this process's RSS on CPU)."""
    import time
    import torch
    for _ in range(3):
        step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(dev)
    ms = (time.perf_counter() - start) * 1000 / iters
    if dev.type == "cuda":
        return ms, torch.cuda.max_memory_allocated() / 2 ** 20
    from benchmarks.common import peak_rss_mb
    return ms, peak_rss_mb()


def measure_grouped(arch, n_classes, prec, members, batch, iters, device="cuda"):
    """ms per iteration of a group of ``members`` PTNL runs (one image-encoder pass, then each
    member's step, as ``ptnl.trainers.group``) and of the same members one after another."""
    import torch
    from ptnl.losses import build_loss
    from ptnl.clip.prompts import PromptCLIP, PromptLearner
    dev = torch.device(device)
    model = random_clip(arch)
    if prec == "fp16":
        from clip.model import convert_weights
        convert_weights(model)
    runs = []
    for k in range(members):
        clip = PromptCLIP(PromptLearner(class_names(n_classes), model, n_ctx=16), model).to(dev)
        runs.append((clip, torch.optim.SGD(clip.prompt_learner.parameters(), lr=0.002, momentum=0.9)))
    loss_fn = build_loss("ce")
    images = torch.randn(batch, 3, 224, 224, device=dev)
    labels = torch.randint(0, n_classes, (batch,), device=dev)

    def member_step(clip, opt, features):
        opt.zero_grad()
        loss_fn(clip.logits_from_features(features), labels).backward()
        opt.step()

    def grouped():
        with torch.no_grad():
            features = runs[0][0].image_encoder(images.type(runs[0][0].dtype))
        for clip, opt in runs:
            member_step(clip, opt, features)

    def separate():
        for clip, opt in runs:
            with torch.no_grad():
                features = clip.image_encoder(images.type(clip.dtype))
            member_step(clip, opt, features)
    return _timed(grouped, dev, iters)[0], _timed(separate, dev, iters)[0]


MODES = {"full": (False, False), "truncated": (True, False), "shared": (True, True)}


def measure(arch, n_classes, prec, mode, batch, iters):
    """(ms per iteration, peak MB) with the text encoder ``mode``: full 77 positions, truncated
    to the last end-of-text token, or truncated with the shared prefix computed once."""
    import torch
    from ptnl.losses import build_loss
    from ptnl.clip.prompts import PromptCLIP, PromptLearner
    dev = torch.device("cuda")
    model = random_clip(arch)
    if prec == "fp16":
        from clip.model import convert_weights
        convert_weights(model)
    learner = PromptLearner(class_names(n_classes), model, n_ctx=16)
    clip = PromptCLIP(learner, model).to(dev)
    clip.text_encoder.truncate, clip.text_encoder.share_prefix = MODES[mode]
    opt = torch.optim.SGD(learner.parameters(), lr=0.002, momentum=0.9)
    loss_fn = build_loss("ce")
    images = torch.randn(batch, 3, 224, 224, device=dev)
    labels = torch.randint(0, n_classes, (batch,), device=dev)

    def step():
        opt.zero_grad()
        loss_fn(clip(images), labels).backward()
        opt.step()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters, torch.cuda.max_memory_allocated() / 2 ** 20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--members", type=int, default=5, help="runs in the grouped measurement")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (the grouped measurement only)")
    a = p.parse_args(argv)
    import torch
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks.cuda_iteration needs a CUDA device (--device cpu: the grouped figures on CPU)")
    print("device: {}".format(torch.cuda.get_device_name() if a.device == "cuda" else "cpu"))
    print("grouped runs: {} PTNL members, one iteration each (ms), 47 classes, truncated text".format(a.members))
    for arch in ARCHS:
        for prec in (("fp16", "fp32") if a.device == "cuda" else ("fp32",)):
            grouped, separate = measure_grouped(arch, 47, prec, a.members, a.batch, a.iters, a.device)
            print("  {:<9} {:>5}: grouped {:9.1f}  separate {:9.1f}  ({:.2f}x)".format(
                arch, prec, grouped, separate, separate / grouped))
    if a.device != "cuda":
        return
    print("text encoder: full 77 positions | truncated to the last end-of-text token | truncated with the shared "
          "prefix (SOS + context) once; ms per iteration / peak MB, speed and memory against full")
    print("{:<9} {:>7} {:>5} {:>18} {:>18} {:>18} {:>15} {:>15}".format(
        "arch", "classes", "prec", "full", "truncated", "shared prefix", "trunc speed/mem", "shared speed/mem"))
    for arch in ARCHS:
        for n in (47, 1000):
            for prec in ("fp16", "fp32"):
                r = {mode: measure(arch, n, prec, mode, a.batch, a.iters) for mode in MODES}
                print("{:<9} {:>7} {:>5} {:>9.1f} / {:>6.0f} {:>9.1f} / {:>6.0f} {:>9.1f} / {:>6.0f} {:>7.2f}x/{:.2f}x "
                      "{:>7.2f}x/{:.2f}x".format(
                          arch, n, prec, *r["full"], *r["truncated"], *r["shared"],
                          r["full"][0] / r["truncated"][0], r["full"][1] / r["truncated"][1],
                          r["full"][0] / r["shared"][0], r["full"][1] / r["shared"][1]))


if __name__ == "__main__":
    main()
