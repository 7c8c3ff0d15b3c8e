"""Per-iteration time and peak GPU memory of PTNL prompt tuning on a CUDA machine: RN50 and
ViT-B/32 (random weights), 47 and 1000 classes, fp16 and fp32, text truncation on and off.

    python -m benchmarks.cuda_iteration [--batch 32] [--iters 20]

One iteration = image encoder forward (frozen) + prompt learner + text encoder forward and
backward + SGD step, at batch 32 and 224 px, as in training.
"""
import argparse

from benchmarks.common import ARCHS, class_names, random_clip


def measure(arch, n_classes, prec, truncate, batch, iters):
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
    clip.text_encoder.truncate = truncate
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
    a = p.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.cuda_iteration needs a CUDA device")
    print("device: {}".format(torch.cuda.get_device_name()))
    print("{:<9} {:>7} {:>5} {:>24} {:>24} {:>8} {:>8}".format(
        "arch", "classes", "prec", "full: ms/it / peak MB", "truncated: ms/it / MB", "speed", "memory"))
    for arch in ARCHS:
        for n in (47, 1000):
            for prec in ("fp16", "fp32"):
                full = measure(arch, n, prec, False, a.batch, a.iters)
                trunc = measure(arch, n, prec, True, a.batch, a.iters)
                print("{:<9} {:>7} {:>5} {:>12.1f} / {:>8.0f} {:>12.1f} / {:>8.0f} {:>7.2f}x {:>7.2f}x".format(
                    arch, n, prec, full[0], full[1], trunc[0], trunc[1], full[0] / trunc[0], full[1] / trunc[1]))


if __name__ == "__main__":
    main()
