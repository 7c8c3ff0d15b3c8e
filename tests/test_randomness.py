"""DATALOADER.RANDOMNESS: a run's batches and result do not depend on the loader's worker count or
on draws made before training (per_sample), and a resumed run equals an uninterrupted one (the
checkpoints carry the global generators' states), in both randomness modes."""
import random

import numpy as np
import pytest
import torch

from conftest import SMALL_OPTS
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.data.randomness import EpochSampler, seeded, set_loader_epoch, stream_seed

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


def build(world, out, opts=(), seed=1):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file("configs/trainers/PTNL/rn50.yaml")
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 4, "SEED", seed, "TRAINER.NAME", "PTNL",
                         "MODEL.BACKBONE.NAME", world["clip"], "OUTPUT_DIR", str(out),
                         "DATASET.NOISE.RATE", 0.5, "OPTIM.MAX_EPOCH", 3] + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(seed)
    return compat.build_trainer(cfg)


def epoch_batches(trainer, epoch):
    set_loader_epoch(trainer.train_loader_x, epoch)
    return [(list(b["impath"]), b["img"].clone()) for b in trainer.train_loader_x]


def same_batches(a, b):
    return len(a) == len(b) and all(pa == pb and torch.equal(xa, xb) for (pa, xa), (pb, xb) in zip(a, b))


def test_stream_seed_is_fixed_and_distinct():
    # numpy's SeedSequence is specified bit for bit: the same seeds on every machine and version
    # pinned values (numpy 2.x, SeedSequence.generate_state(2, uint32) folded to 63 bits): a change of
    # the derivation, or of the numpy it relies on, changes every run's data stream and must be seen
    assert stream_seed(1, 0, 5) == 4741648778038483447
    assert stream_seed(1, 0, 6) == 1713701956954669805 and stream_seed(2, 0, 5) == 5741131034664465354
    assert len({stream_seed(1, e, i) for e in range(3) for i in range(50)}) == 150


def test_seeded_gives_back_the_global_states():
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    expected = torch.rand(4), np.random.rand(4), random.random()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    with seeded(123):
        inside = torch.rand(2), np.random.rand(2), random.random()
    after = torch.rand(4), np.random.rand(4), random.random()
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1]) and after[2] == expected[2]
    with seeded(123):
        assert torch.equal(torch.rand(2), inside[0])


def test_epoch_sampler_order_depends_on_seed_and_epoch_only():
    s = EpochSampler(20, seed=7)
    s.set_epoch(2)
    first = list(s)
    torch.rand(100)  # the global generator is not used
    assert list(s) == first and sorted(i for _, i in first) == list(range(20))
    assert all(e == 2 for e, _ in first)
    s.set_epoch(3)
    assert [i for _, i in s] != [i for _, i in first]
    assert [i for _, i in EpochSampler(20, seed=7, shuffle=False)] == list(range(20))


def test_batches_do_not_depend_on_workers_or_earlier_draws(world, tmp_path):
    """Today's stream (coop) changes with NUM_WORKERS (37.2 / 36.9 / 33.6 % at 0 / 2 / 8 in the
    issue); per_sample, the default, gives the same augmented batches."""
    base = build(world, tmp_path / "a")
    assert base.cfg.DATALOADER.RANDOMNESS == "per_sample"
    want = [epoch_batches(base, e) for e in (0, 1)]
    assert [p for p, _ in want[0]] != [p for p, _ in want[1]]  # a new order every epoch
    other = build(world, tmp_path / "b", ["DATALOADER.NUM_WORKERS", 2])
    torch.rand(1000), np.random.rand(10), random.random()  # as if the model's initialisation drew more
    got = [epoch_batches(other, e) for e in (1, 0)][::-1]
    assert same_batches(want[0], got[0]) and same_batches(want[1], got[1])


def test_coop_randomness_keeps_dassls_loader(world, tmp_path):
    trainer = build(world, tmp_path / "c", ["DATALOADER.RANDOMNESS", "coop"])
    assert isinstance(trainer.train_loader_x.sampler, torch.utils.data.RandomSampler)
    torch.manual_seed(5)
    a = epoch_batches(trainer, 0)
    torch.manual_seed(5)
    assert same_batches(a, epoch_batches(trainer, 0))
    torch.manual_seed(6)
    assert not same_batches(a, epoch_batches(trainer, 0))  # the global generator decides


def test_unknown_randomness_is_named(world, tmp_path):
    with pytest.raises(ValueError, match=r"DATALOADER.RANDOMNESS must be one of \('per_sample', 'coop'\)"):
        build(world, tmp_path / "d", ["DATALOADER.RANDOMNESS", "persample"])


def train_to_end(world, out, opts=(), interrupt_at=None):
    """Train 3 epochs; ``interrupt_at=(epoch, batch)`` raises KeyboardInterrupt there (as Ctrl-C)
    and a fresh trainer, built after other draws from the global generators, resumes the run."""
    trainer = build(world, out, opts)
    if interrupt_at is not None:
        step = trainer.forward_backward

        def forward_backward(batch):
            if (trainer.epoch, trainer.batch_idx) == interrupt_at:
                raise KeyboardInterrupt
            return step(batch)
        trainer.forward_backward = forward_backward
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        torch.rand(777), np.random.rand(3), random.random()
        trainer = build(world, out, opts)
    trainer.train()
    return trainer.model.prompt_learner.ctx.detach().clone(), trainer.last_test["accuracy"], trainer.start_epoch


@pytest.mark.parametrize("opts", [(), ("DATALOADER.RANDOMNESS", "coop")], ids=["per_sample", "coop"])
def test_resumed_run_equals_uninterrupted(world, tmp_path, opts):
    """Interrupted mid-epoch 2 (of 3) and resumed from the epoch-1 checkpoint: the same final
    context vectors, bit for bit. Without the generators' states in the checkpoint the coop
    stream differed (50.28 % against 50.56 % in the issue)."""
    ctx, acc, _ = train_to_end(world, tmp_path / "whole", opts)
    ctx2, acc2, start = train_to_end(world, tmp_path / "resumed", opts, interrupt_at=(1, 1))
    assert start == 1  # it did resume
    assert torch.equal(ctx, ctx2) and acc == acc2


def test_result_does_not_depend_on_num_workers(world, tmp_path):
    ctx0, acc0, _ = train_to_end(world, tmp_path / "w0")
    ctx2, acc2, _ = train_to_end(world, tmp_path / "w2", ["DATALOADER.NUM_WORKERS", 2])
    assert torch.equal(ctx0, ctx2) and acc0 == acc2


def test_results_record_randomness(world, tmp_path):
    import json
    train_to_end(world, tmp_path / "rec")
    rec = json.load(open(tmp_path / "rec" / "results.json"))
    assert rec["randomness"] == "per_sample" and rec["num_workers"] == 0


def test_bf16_trains_under_cpu_autocast_with_fp32_weights(world, tmp_path):
    """PREC bf16 on CPU: the forward pass runs in bfloat16 (autocast), the learned context and its
    updates stay fp32, and the run ends close to fp32's."""
    trainer = build(world, tmp_path / "bf16", ["TRAINER.PTNL.PREC", "bf16"])
    assert trainer.precision == "bf16" and trainer.model.prompt_learner.ctx.dtype == torch.float32
    start = trainer.model.prompt_learner.ctx.detach().clone()
    seen = []
    step = trainer.compute_loss

    def compute_loss(batch):
        loss, logits = step(batch)
        seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
        return loss, logits
    trainer.compute_loss = compute_loss
    trainer.train()
    assert seen and all(on for on, _ in seen) and seen[0][1] == torch.bfloat16
    fp32 = build(world, tmp_path / "fp32", ["TRAINER.PTNL.PREC", "fp32"])
    assert torch.equal(fp32.model.prompt_learner.ctx, start)  # same seed, same initial context
    fp32.train()
    assert fp32.precision == "fp32"
    # The learned context after the same 3 epochs (same batches): bf16's update of the context
    # against fp32's. Measured: relative difference 0.021 (cosine 0.9998), update norms 1.122 and 1.123.
    # The accuracies of this near-chance random CLIP (18.06 % and 15.28 %) would hide a 10-point gap.
    bf16_update = trainer.model.prompt_learner.ctx.detach() - start
    fp32_update = fp32.model.prompt_learner.ctx.detach() - start
    assert fp32_update.norm() > 0.5
    assert float((bf16_update - fp32_update).norm() / fp32_update.norm()) <= 0.1
