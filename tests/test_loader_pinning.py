"""Pinned memory on CUDA, not on a CPU (issue 33, "a GPU kept busy"): the training loader (both
DATALOADER.RANDOMNESS modes), the test loader and the feature-extraction loader pin their batches
when the run's device is CUDA, so the copy to the GPU (``non_blocking``) overlaps loading; on a CPU
they do not (pinning there only costs). CUDA is faked: the loaders are built, not iterated."""
import pytest
import torch

from conftest import train_args
from ptnl.clip.features import image_loader


def run_cfg(world, tmp_path, *opts):
    import train  # noqa: F401  (registers the datasets and trainers)
    from ptnl.cli.parser import build_parser
    from ptnl.cli.setup import setup_cfg
    argv = train_args(world["data"], world["clip"], str(tmp_path / "out"), extra=opts)[1:]
    return setup_cfg(build_parser().parse_args(argv))


@pytest.mark.parametrize("randomness", ["coop", "per_sample"])
@pytest.mark.parametrize("cuda", [False, True])
def test_run_loaders_pin_on_cuda_only(world, tmp_path, monkeypatch, randomness, cuda):
    from ptnl.data.manager import RunData
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = run_cfg(world, tmp_path, "DATALOADER.RANDOMNESS", randomness)
    assert cfg.USE_CUDA
    data = RunData(cfg)
    train = data.build_train_loader(data.dataset.train_x)
    assert train.pin_memory is cuda and data.test_loader.pin_memory is cuda


def test_feature_loader_pins_for_a_cuda_encoder():
    paths = ["unused.jpg"]  # the loader is built, not read
    assert image_loader(paths, None, "cuda", 8).pin_memory is True
    assert image_loader(paths, None, torch.device("cuda", 0), 8).pin_memory is True
    assert image_loader(paths, None, "cpu", 8).pin_memory is False
