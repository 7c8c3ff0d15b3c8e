"""The speed paths change nothing: cached evaluation equals the image-by-image one, decoded-image
reuse gives the same batches, and an interrupted cache write is never read back."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from ptnl.io import cache
from ptnl.data.decoded import DecodedImageWrapper
from test_trainers import build


@pytest.mark.parametrize("name", ["PTNL", "ClassifierC", "TEncFT", "ZeroshotCLIP", "CLSTuning"])
def test_cached_evaluation_equals_uncached(name, world, tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("ptnl.clip.weights._DIGESTS", {})
    results = {}
    for i, flag in enumerate(("False", "True", "True")):  # off, first cached run (miss), second (hit)
        t = build(name, world, tmp_path / str(i), opts=("TRAINER.PTNL.CACHE_FEATURES", flag,
                                                         "TRAINER.PTNL.SAVE_TEST_LOGITS", "True",
                                                         "DATALOADER.TEST.BATCH_SIZE", 16))
        assert len(t.dm.dataset.test) > 16  # several batches
        calls = []
        encoder = getattr(t.model, "text_encoder", None)
        if encoder is not None:
            encoder.register_forward_hook(lambda *args: calls.append(1))
        acc = t.test()
        if encoder is not None and flag == "True":
            assert len(calls) == 1  # text features computed once per evaluation, not once per batch
        saved = torch.load(osp.join(t.output_dir, "test_logits.pt"), weights_only=True)
        results.setdefault(flag, []).append((acc, saved["logits"]))
    (acc_off, logits_off), = results["False"]
    for acc_on, logits_on in results["True"]:
        assert acc_on == acc_off
        torch.testing.assert_close(logits_on, logits_off, rtol=1e-4, atol=1e-4)
    # one entry of test-split features (and the memos of the weights file's digest and of the
    # generator state CLIP's initialisation leaves, the same seed each time)
    kinds = sorted(e["about"]["kind"] for e in cache.entries(str(tmp_path / "cache" / "features")))
    assert kinds == ["clip_init_draws", "file_digest", "image_features"]


def test_decoded_image_wrapper_gives_identical_batches(world, tmp_path):
    t = build("PTNL", world, tmp_path, opts=("TRAINER.PTNL.DECODE_CACHE_MB", 64))
    loader = t.train_loader_x
    assert isinstance(loader.dataset, DecodedImageWrapper) and len(loader.dataset.decoded) == 24
    plain = build("PTNL", world, tmp_path, opts=("TRAINER.PTNL.DECODE_CACHE_MB", 0)).train_loader_x
    assert not isinstance(plain.dataset, DecodedImageWrapper)
    torch.manual_seed(5)
    a = [b["img"] for b in loader]
    torch.manual_seed(5)
    b = [b["img"] for b in plain]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    tiny = type("W", (DecodedImageWrapper,), {"budget_mb": 0.001})
    assert tiny(t.cfg, t.dm.dataset.train_x, transform=None, is_train=True).decoded == {}


def test_decoded_images_are_held_for_the_process_and_decoded_again_when_a_file_changes(tmp_path, monkeypatch):
    """The runs of one process (a grid's runs one after another) decode an image once; a file
    replaced in place (new size or modification time) is decoded again; what goes beyond the budget
    is let go, least recently asked for first."""
    from PIL import Image
    from ptnl.data import decoded
    monkeypatch.setattr(decoded, "_HELD", type(decoded._HELD)())
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / "{}.png".format(i)))
        Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(paths[-1])
    reads = []
    real = decoded.compat.read_image
    monkeypatch.setattr(decoded.compat, "read_image", lambda p: reads.append(p) or real(p))
    first = decoded.decode_images(paths[:2], 1)
    second = decoded.decode_images(paths[:2], 1)
    assert reads == paths[:2] and all(first[p] is second[p] for p in paths[:2])
    Image.new("RGB", (64, 64), (0, 255, 0)).save(paths[0])  # replaced in place: decoded again
    os.utime(paths[0], ns=(1, 1))
    third = decoded.decode_images(paths[:2], 1)
    assert reads == paths[:2] + paths[:1] and third[paths[0]].getpixel((0, 0)) == (0, 255, 0)
    # a budget of two images' worth (64 x 64 x 3 bytes each): asking for the third lets go the oldest
    decoded.decode_images(paths[1:], 2 * 64 * 64 * 3 / 2 ** 20)
    assert sorted(k[0] for k in decoded._HELD) == paths[1:]


def test_features_cached_for_one_encoder_precision_are_not_read_for_another(world, tmp_path, monkeypatch):
    """The feature cache's key names the device type and the encoder's dtype: features a CUDA fp16
    run cached in a shared folder are not what a CPU fp32 run reads, and the reverse."""
    import glob
    from ptnl.clip.features import cached_image_features
    from torchvision import transforms
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    paths = sorted(glob.glob(osp.join(world["data"], "**", "*.jpg"), recursive=True))[:3]
    tfm = transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])
    calls = []

    def encode(x):
        calls.append(len(x))
        return x.flatten(1)[:, :4] + 1
    for dtype in (torch.float32, torch.float32, torch.float16, torch.float16):
        cached_image_features(encode, world["clip"], "D", "test", paths, tfm, "cpu", dtype=dtype)
    assert calls == [3, 3]  # computed once per dtype, read the second time


def test_interrupted_cache_write_is_never_read(tmp_path):
    root = str(tmp_path / "c")
    key = cache.cache_key(kind="test")
    script = (
        "import os, torch, sys\n"
        "sys.path.insert(0, {repo!r})\n"
        "from ptnl.io import cache\n"
        "real = torch.save\n"
        "def dying_save(obj, f):\n"
        "    f.write(b'PK partial bytes')\n"
        "    f.flush()\n"
        "    os._exit(9)\n"
        "torch.save = dying_save\n"
        "cache.save({key!r}, {{'x': torch.ones(3)}}, root={root!r})\n"
    ).format(repo=osp.dirname(osp.dirname(osp.abspath(__file__))), key=key, root=root)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == 9
    leftovers = [f for _, _, fs in os.walk(root) for f in fs]
    assert leftovers and all(f.startswith(".tmp-") for f in leftovers)
    assert cache.load(key, root=root) is None
    assert cache.size_report(root) == (0, 0)
    cache.save(key, {"x": torch.ones(3)}, root=root)
    assert torch.equal(cache.load(key, root=root)["x"], torch.ones(3))


def test_cache_key_changes_with_any_part():
    base = dict(kind="image_features", weights="a", dataset="D", split="test", transform="T", images="i")
    keys = {cache.cache_key(**base)}
    for part in base:
        keys.add(cache.cache_key(**dict(base, **{part: base[part] + "x"})))
    assert len(keys) == len(base) + 1


def test_lean_quick_gelu_matches_clip_quick_gelu():
    from clip.model import QuickGELU
    from ptnl.clip.text import _QuickGELU
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    assert torch.equal(_QuickGELU.apply(x), QuickGELU()(y))
    g = torch.randn(5, 7, dtype=torch.float64)
    _QuickGELU.apply(x).backward(g)
    QuickGELU()(y).backward(g)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_QuickGELU.apply, (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("kind", ("vit", "rn"))
@pytest.mark.parametrize("stored", ("fp16", "fp32"))
@pytest.mark.parametrize("half", (False, True))
def test_cached_initialisation_draws_build_the_same_model(tmp_path, monkeypatch, kind, stored, half):
    """A second build finds the generator state CLIP's initialisation ends in cached and makes the
    modules without drawing: the same values, dtypes, attention masks, outputs and generator state
    (so CoOp's context draws that follow are unchanged); another starting state is another entry."""
    from ptnl.clip import weights
    from ptnl.data.generated import make_clip
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    path = make_clip(str(tmp_path / "clip.pt"), kind=kind)
    if stored == "fp16":
        sd = weights.read_state_dict(path)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, path)
    built_on = []
    real = weights.build_model
    monkeypatch.setattr(weights, "build_model", lambda sd: _record(real, sd, built_on))

    def build(seed):
        torch.manual_seed(seed)
        model = weights._build(weights.read_state_dict(path), half=half)
        return model, torch.get_rng_state(), torch.randn(4)

    (m1, rng1, next1), (m2, rng2, next2) = build(3), build(3)
    assert built_on == ["cpu", "meta"]  # the second build drew nothing
    assert torch.equal(rng1, rng2) and torch.equal(next1, next2)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(s1[k].dtype == s2[k].dtype and torch.equal(s1[k], s2[k]) for k in s1)
    assert all(torch.equal(a.attn_mask, b.attn_mask) and b.attn_mask.device.type == "cpu"
               for a, b in zip(m1.transformer.resblocks, m2.transformer.resblocks))
    size = m1.visual.input_resolution
    with torch.no_grad():
        image, text = torch.randn(2, 3, size, size).type(m1.dtype), torch.randint(1, 400, (2, 77))
        assert torch.equal(m1.encode_image(image), m2.encode_image(image))
        assert torch.equal(m1.encode_text(text), m2.encode_text(text))
    build(4)
    assert built_on[-1] == "cpu"  # another generator state: built (and cached) again


def _record(real, sd, built_on):
    model = real(sd)
    built_on.append(next(iter(model.parameters())).device.type)
    return model


def test_fp32_build_of_fp16_weights_equals_build_model_then_float(tmp_path):
    """load_clip skips build_model's fp16 conversion for fp16 files (start-up): the same values,
    dtypes and initialisation draws as build_model(...).float(); fp32 files keep build_model's path."""
    from clip.model import build_model
    from ptnl.clip.weights import _build, read_state_dict
    from ptnl.data.generated import make_clip
    path = make_clip(str(tmp_path / "fp32.pt"), kind="vit")
    half = str(tmp_path / "fp16.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}, half)
    for p in (path, half):
        sd = read_state_dict(p)
        torch.manual_seed(3)
        ref = build_model(dict(sd)).float().state_dict()
        after_ref = torch.get_rng_state()
        torch.manual_seed(3)
        got = _build(dict(sd), half=False).state_dict()
        assert torch.equal(after_ref, torch.get_rng_state())
        assert ref.keys() == got.keys()
        assert all(ref[k].dtype == got[k].dtype and torch.equal(ref[k], got[k]) for k in ref)


def test_quick_exit_runs_exit_handlers_and_flushes_open_files(tmp_path):
    """train.py's end skips the interpreter's teardown, but nothing written is lost: exit handlers
    run, a file left open with buffered text is flushed, the status is kept, and the scan of open
    files prints no warnings (torch.distributed's deprecated objects warn on __class__ lookups)."""
    data, marker = tmp_path / "open.txt", tmp_path / "atexit.txt"
    script = (
        "import atexit, sys\n"
        "sys.path.insert(0, {repo!r})\n"
        "import torch.distributed\n"
        "from ptnl.cli import exits as cli\n"
        "f = open({data!r}, 'w')\n"
        "f.write('buffered, never flushed')\n"
        "atexit.register(lambda: open({marker!r}, 'w').write('ran'))\n"
        "cli.quick_exit(3)\n"
    ).format(repo=osp.dirname(osp.dirname(osp.abspath(__file__))), data=str(data), marker=str(marker))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert data.read_text() == "buffered, never flushed" and marker.read_text() == "ran"
    assert "Warning" not in proc.stderr, proc.stderr
