"""Start-up (issue 33): a run reads its weights file once. The input resolution at config time
looks at the state dict's shapes through a memory map, not a second full read; the weights'
sha256 (the feature cache's key) is computed once, in a thread started while CLIP is built."""
import threading

import torch

import ptnl.clip.weights as weights
from ptnl.clip.preprocess import input_resolution


def test_config_time_resolution_does_not_read_the_weights(world, monkeypatch):
    loads, real = [], torch.load

    def counting(f, *args, **kwargs):
        if str(getattr(f, "name", f)) == world["clip"]:  # the weights file's reads, not a cache entry's
            loads.append(bool(kwargs.get("mmap")))
        return real(f, *args, **kwargs)
    monkeypatch.setattr(weights.torch, "load", counting)
    monkeypatch.setattr("ptnl.clip.preprocess._FILE_SIZES", {})
    size = input_resolution(world["clip"])
    model = weights.load_clip(world["clip"])
    assert size == model.visual.input_resolution
    assert loads == [True, False]  # shapes through a memory map, then the one full read that builds CLIP


def test_weights_digest_is_made_once_beside_the_build(world, tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "_DIGESTS", {})
    monkeypatch.setattr(weights, "_DIGESTING", {})
    calls, real = [], weights.file_digest

    def counting(path, *args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(weights, "file_digest", counting)
    weights.load_clip(world["clip"])
    digest = weights.weights_digest(world["clip"])
    assert digest == real(world["clip"])
    assert calls == ["ptnl-weights-digest"]  # made by the thread load_clip started, and only there
    assert weights.weights_digest(world["clip"]) == digest and len(calls) == 1
