"""Stacked members (ptnl.trainers.stacked): runs of a group with the same prompt shapes share one
text-encoder pass and one backward per batch, and each member's logits, gradients, per-batch losses,
contexts after several epochs and test accuracy equal its lone run's to float rounding; what cannot
stack (other prompt shapes, TRAINER.PTNL.STACK False) keeps today's grouping; STACK=0 in the grid
scripts turns stacking off; under the flip protocol runs of other noise rates share a stream, each
member on its own labels.

Tolerance (REL, relative to the largest magnitude compared): float rounding of the M x C-row matrix
products against the C-row ones. Measured on this machine's CPU (2 cores): with 1 thread (CI's
workers) bit for bit equal; with 2 threads logits and gradients of one pass within 1.2e-6 relative,
contexts after 3 epochs and per-batch losses within 6e-7; test accuracies identical."""
import json
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import train_args
from ptnl import cli, compat
from ptnl.cli.parser import build_parser
from ptnl.cli.setup import setup_cfg
from ptnl.clip.prompts import PromptCLIP, PromptLearner
from ptnl.clip.weights import load_clip, shared_loads
from ptnl.sweep import group as sweep_group
from ptnl.trainers import group as trainer_group
from ptnl.trainers import stacked
from ptnl.trainers.base import PTNLTrainerBase

import train  # noqa: F401  (registers the datasets and trainers)

REL = 1e-5  # measured: at most 1.2e-6 (see the docstring)


def close(a, b):
    """|a - b| within REL of the larger magnitude (tensors or floats)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return (a - b).abs().max().item() <= REL * max(a.abs().max().item(), b.abs().max().item(), 1e-12)
CLASSES = ["red fox", "cat", "golden striped river whale", "owl", "sea_bear", "dog"]


@pytest.mark.parametrize("position,csc", [("end", False), ("middle", False), ("front", False), ("end", True)])
def test_one_pass_gives_each_members_logits_and_gradients(world, position, csc):
    clip_model = load_clip(world["clip"], device="cpu", prec="fp32")
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        learner = PromptLearner(CLASSES, clip_model, n_ctx=4, csc=csc, position=position)
        models.append(PromptCLIP(learner, clip_model))
    torch.manual_seed(10)
    images, labels = torch.randn(5, 3, 32, 32), torch.tensor([0, 2, 3, 5, 1])
    alone = []
    for m in models:
        logits = m(images)
        alone.append((logits.detach(), torch.autograd.grad(F.cross_entropy(logits, labels), m.prompt_learner.ctx)[0]))
    passes = []
    hook = clip_model.transformer.resblocks[0].ln_1.register_forward_pre_hook(lambda mod, args: passes.append(1))
    together = stacked.stacked_logits(models, images)
    hook.remove()
    torch.autograd.backward([F.cross_entropy(logits, labels) for logits in together])
    assert len(passes) == 1  # one text-encoder pass for the three members
    for m, (logits, grad), joint in zip(models, alone, together):
        assert close(joint.detach(), logits) and close(m.prompt_learner.ctx.grad, grad)
        assert grad.abs().max().item() > 0


def test_what_stacks_is_what_has_one_prompt_shape(world, tmp_path):
    base = argv_of(world, tmp_path / "a", "ce")
    args = [base, argv_of(world, tmp_path / "b", "gce"),
            argv_of(world, tmp_path / "c", "ce", ["TRAINER.PTNL.N_CTX", "8"]),
            argv_of(world, tmp_path / "d", "mae", ["TRAINER.PTNL.STACK", "False"]),
            argv_of(world, tmp_path / "e", "sce", ["TRAINER.PTNL.N_CTX", "8"])]
    trainers = []
    with shared_loads():  # one CLIP for all, as a group loads it
        for a in args:
            torch.manual_seed(1)
            trainers.append(compat.build_trainer(setup_cfg(build_parser().parse_args(a))))
    assert stacked.stack_partition(trainers) == [[0, 1], [2, 4]]


def test_stack_switch_in_grid_scripts():
    runs = [{"argv": ["python", "train.py", "--seed", "1", "--trainer", "PTNL", "--output-dir", "o/" + loss,
                      "TRAINER.PTNL.LOSS", loss]} for loss in ("ce", "gce")]
    assert sweep_group.stacking({}) and sweep_group.stacking({"STACK": "1"})
    assert not sweep_group.stacking({"STACK": "0"})
    assert sweep_group.member_args(runs, [0, 1], env={"STACK": "0"})[1][-2:] == ["TRAINER.PTNL.STACK", "False"]
    assert sweep_group.member_args(runs, [0, 1], env={})[1] == runs[1]["argv"][2:]


# ---------------------------------------------------------------------------------- training
def argv_of(world, out, loss, extra=()):
    return train_args(world["data"], world["clip"], str(out), loss=loss, epochs=3,
                      extra=["TRAIN.CHECKPOINT_FREQ", "1"] + list(extra))[1:]


BATCH_LOSSES = {}  # (run folder, epoch, batch) -> the loss the step reported


def _recording(step):
    def forward_backward(self, batch):
        summary = step(self, batch)
        BATCH_LOSSES[(self.output_dir, self.epoch, self.batch_idx)] = summary["loss"]
        return summary
    return forward_backward


def run(args):
    terminal = sys.stdout
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(PTNLTrainerBase, "forward_backward", _recording(PTNLTrainerBase.forward_backward))
            cli.main(build_parser().parse_args(args))
    finally:
        sys.stdout.flush()
        sys.stdout = terminal


def ctx(out):
    return torch.load(osp.join(out, "prompt_learner", "model.pth.tar-3"), weights_only=False)["state_dict"]["ctx"]


def record(out):
    with open(osp.join(out, "results.json")) as f:
        return json.load(f)


# the members differ in loss and, under the flip protocol, in noise rate: other labels of the same items
MEMBERS = {"ce-0.5": ("ce", "0.5"), "gce-0.25": ("gce", "0.25")}
FLIP = ["DATASET.NOISE.MODE", "flip"]


def member_argv(world, out, name):
    loss, rate = MEMBERS[name]
    return argv_of(world, out, loss, FLIP + ["DATASET.NOISE.RATE", rate])


@pytest.fixture(scope="module")
def lone(world, tmp_path_factory):
    base = tmp_path_factory.mktemp("lone")
    for name in MEMBERS:
        run(member_argv(world, base / name, name))
    return {name: str(base / name) for name in MEMBERS}


def test_stacked_group_equals_lone_runs(world, tmp_path, lone, capsys):
    path = tmp_path / "group.json"
    path.write_text(json.dumps([member_argv(world, tmp_path / name, name) for name in MEMBERS]))
    capsys.readouterr()
    run(["--group", str(path)])
    out = capsys.readouterr().out
    assert "Stacked 2 runs of PTNL" in out and out.count("Stacked") == 1
    labels = [json.load(open(osp.join(lone[n], "noise.json")))["samples"] for n in MEMBERS]
    assert [r["impath"] for r in labels[0]] == [r["impath"] for r in labels[1]] and labels[0] != labels[1]
    for name in MEMBERS:
        a, b = record(lone[name]), record(str(tmp_path / name))
        assert a["accuracy"] == b["accuracy"] and a["per_class_accuracy"] == b["per_class_accuracy"]
        assert [e["train_acc_given"] for e in a["epochs"]] == [e["train_acc_given"] for e in b["epochs"]]
        assert len(a["epochs"]) == 3 and a["settings_digest"] == b["settings_digest"]
        assert close(ctx(lone[name]), ctx(str(tmp_path / name)))
        steps = sorted(k[1:] for k in BATCH_LOSSES if k[0] == lone[name])
        assert len(steps) >= 6  # several steps a member, each compared
        for step in steps:
            assert close(BATCH_LOSSES[(lone[name],) + step], BATCH_LOSSES[(str(tmp_path / name),) + step])


def test_flip_runs_of_other_rates_share_a_stream_swap_runs_do_not(world, tmp_path):
    def cfg(name, extra):
        return setup_cfg(build_parser().parse_args(argv_of(world, tmp_path / name, "ce", extra)))
    cfgs = [cfg("f5", FLIP + ["DATASET.NOISE.RATE", "0.5"]), cfg("f2", FLIP + ["DATASET.NOISE.RATE", "0.25"]),
            cfg("fp", FLIP + ["DATASET.NOISE.TYPE", "pair"]), cfg("s5", ["DATASET.NOISE.RATE", "0.5"]),
            cfg("s2", ["DATASET.NOISE.RATE", "0.25"]), cfg("f5s2", FLIP + ["SEED", "2"])]
    assert trainer_group.partition(cfgs) == [[0, 1, 2], [3], [4], [5]]

    def run_(rate, mode):
        return {"argv": ["python", "train.py", "--seed", "1", "--trainer", "PTNL", "--output-dir", "o/{}{}".format(
            mode, rate), "DATASET.NOISE.RATE", rate, "DATASET.NOISE.MODE", mode]}
    runs = [run_("0.0", "flip"), run_("0.5", "flip"), run_("0.0", "swap"), run_("0.5", "swap")]
    assert sweep_group.propose(runs, [0, 1, 2, 3]) == [[0, 1], [2], [3]]
