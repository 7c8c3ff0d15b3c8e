"""(a) Text encoder forward + backward (prompt tuning, 16 context tokens) for 47 and 1000 classes,
truncated to the last end-of-text token vs the full 77 positions, with peak memory; then truncated
with the prompts' shared prefix (start token + context) computed once (TRAINER.PTNL.SHARE_PREFIX).

    python -m benchmarks.text_encoder [--archs RN50 ViT-B/32] [--classes 47 1000] [--repeat 3]

Each configuration runs in its own process, so peak memory (max RSS) is its own; the printed
memory is the peak minus the process's memory before the forward pass. The process may use at
most --mem-limit-gb of memory (default 20, below this machine's 24). The full-length path at
1000 classes needs more (about 35 GB): it is then reported as out of memory, with the limit as a
lower bound of its memory, and its time is measured by running the same forward + backward over
the classes in chunks of --chunk classes (prompts are encoded independently, so this is the
same arithmetic), against the truncated path chunked the same way.
"""
import argparse
import json
import sys

from benchmarks.common import ARCHS, class_names, peak_rss_mb, random_clip, run_child, timed


def child(arch, n_classes, truncate, repeat, limit_gb, chunk=0, share=False):
    import resource

    import torch
    limit = int(limit_gb * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    from ptnl.clip.prompts import PromptCLIP, PromptLearner
    torch.set_num_threads(torch.get_num_threads())
    model = random_clip(arch)
    learner = PromptLearner(class_names(n_classes), model, n_ctx=16)
    clip = PromptCLIP(learner, model)
    clip.text_encoder.truncate, clip.text_encoder.share_prefix = truncate, share
    base = peak_rss_mb()

    def step():
        learner.zero_grad()
        if not chunk:
            clip.text_features().sum().backward()
            return
        tokens = learner.tokenized_prompts
        for i in range(0, n_classes, chunk):
            feats = clip.text_encoder(learner()[i:i + chunk], tokens[i:i + chunk], learner.shared_positions())
            (feats / feats.norm(dim=-1, keepdim=True)).sum().backward()
    try:
        seconds = timed(step, repeat)
    except (RuntimeError, MemoryError) as e:  # torch's allocator failing under the limit
        if "memory" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        return {"oom": True, "peak_mb": limit_gb * 1024.0}
    eot = int(learner.tokenized_prompts.argmax(-1).max()) + 1
    return {"seconds": seconds, "peak_mb": peak_rss_mb() - base, "positions": eot if truncate else 77}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--classes", nargs="+", type=int, default=[47, 1000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--mem-limit-gb", type=float, default=20.0)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--child", action="store_true")
    p.add_argument("rest", nargs="*")
    a = p.parse_args(argv)
    if a.child:
        arch, n, trunc, rep, limit, chunk = a.rest  # trunc: 0 full, 1 truncated, 2 truncated + shared prefix
        print(json.dumps(child(arch, int(n), trunc != "0", int(rep), float(limit), int(chunk), trunc == "2")))
        return
    print("text encoder forward + backward (16 context tokens), CPU, {} repeats (median)".format(a.repeat))
    print("{:<9} {:>7} {:>22} {:>22} {:>9} {:>9}".format("arch", "classes", "full 77: s / peak MB",
                                                         "truncated: s / peak MB", "speed-up", "mem ratio"))
    for arch in a.archs:
        for n in a.classes:
            full = run_child("text_encoder", [arch, n, 0, a.repeat, a.mem_limit_gb, 0])
            trunc = run_child("text_encoder", [arch, n, 1, a.repeat, a.mem_limit_gb, 0])
            if full.get("oom"):
                print("{:<9} {:>7} {:>22} {:>13.3f} / {:>6.0f} {:>9} {:>7.1f}x   ({} positions; full: out of "
                      "memory at the {:.0f} GB limit, so the memory ratio is a lower bound)".format(
                          arch, n, "out of memory", trunc["seconds"], trunc["peak_mb"], "n/a",
                          full["peak_mb"] / max(trunc["peak_mb"], 1e-9), trunc["positions"], a.mem_limit_gb))
                sys.stdout.flush()
                full_c = run_child("text_encoder", [arch, n, 0, a.repeat, a.mem_limit_gb, a.chunk])
                trunc_c = run_child("text_encoder", [arch, n, 1, a.repeat, a.mem_limit_gb, a.chunk])
                print("{:<9} {:>7} {:>13.3f} / {:>6} {:>13.3f} / {:>6} {:>8.1f}x {:>9}   (both in chunks of {} "
                      "classes; full chunked vs truncated whole: {:.1f}x)".format(
                          arch, n, full_c["seconds"], "-", trunc_c["seconds"], "-",
                          full_c["seconds"] / trunc_c["seconds"], "", a.chunk,
                          full_c["seconds"] / trunc["seconds"]))
            else:
                print("{:<9} {:>7} {:>13.3f} / {:>6.0f} {:>13.3f} / {:>6.0f} {:>8.1f}x {:>8.1f}x   ({} positions)".format(
                    arch, n, full["seconds"], full["peak_mb"], trunc["seconds"], trunc["peak_mb"],
                    full["seconds"] / trunc["seconds"], full["peak_mb"] / max(trunc["peak_mb"], 1e-9),
                    trunc["positions"]))
            sys.stdout.flush()
    print("shared prefix computed once, against truncated alone (whole, no chunks)")
    for arch in a.archs:
        for n in a.classes:
            trunc = run_child("text_encoder", [arch, n, 1, a.repeat, a.mem_limit_gb, 0])
            shared = run_child("text_encoder", [arch, n, 2, a.repeat, a.mem_limit_gb, 0])
            print("{:<9} {:>7} truncated {:8.3f} s / {:6.0f} MB   shared prefix {:8.3f} s / {:6.0f} MB   {:.1f}x faster, "
                  "{:.1f}x less memory".format(arch, n, trunc["seconds"], trunc["peak_mb"], shared["seconds"],
                                               shared["peak_mb"], trunc["seconds"] / shared["seconds"],
                                               trunc["peak_mb"] / max(shared["peak_mb"], 1e-9)))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
