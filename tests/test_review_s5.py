"""Results that could be wrong without anyone noticing, in the transfer protocols (base-to-new,
cross-dataset) and the deep-prompt trainers' evaluations:

- a checkpoint whose trained state is per class (CoOp's class-specific context, learned class-name
  tokens, a linear head) evaluated on another class list of the same size: class i was scored with
  what was learned for trained class i (base-to-new on any dataset with an even class count);
- MaPLe's and PromptSRC's prompt shape (depth, token counts, CTX_INIT) at --eval-only came from the
  evaluation's command line and config, not the trained run: missing deep prompts stayed at their
  random start and extra ones were dropped, silently (load_state_dict is not strict);
- the protocols' tables averaged runs of other settings (another N_CTX, optimiser, ...) as seeds of one;
- an empty class folder of an ImageNet test set shifted every later class's name by one;
- base2new.sh kept a new-class evaluation of an earlier model after the run was trained again;
- --eval-only of a LinearProbe folder scored its untrained all-zero classifier;
- CoCoOp's evaluation did not chunk its B x C prompts (memory, not numbers).
"""
import json
import os
import os.path as osp

import pytest

from conftest import REPO, SMALL_OPTS, run_py

from ptnl.report.protocols import base2new_rows, collect, format_base2new, format_xd, xd_rows
from ptnl.trainers.class_transfer import class_transfer_problem


def _train(world, out, trainer, config, extra=(), epochs=1):
    return run_py(["train.py", "--root", world["data"], "--trainer", trainer, "--seed", "1",
                   "--dataset-config-file", "configs/datasets/dtd.yaml", "--config-file", config,
                   "--output-dir", out, "DATASET.NUM_SHOTS", "4", "MODEL.BACKBONE.NAME", world["clip"],
                   "OPTIM.MAX_EPOCH", str(epochs)] + SMALL_OPTS + list(extra))


def _evaluate(world, out, model_dir, trainer, config, extra=(), check=True):
    return run_py(["train.py", "--root", world["data"], "--trainer", trainer, "--seed", "1",
                   "--dataset-config-file", "configs/datasets/dtd.yaml", "--config-file", config,
                   "--output-dir", out, "--eval-only", "--model-dir", model_dir, "--load-epoch", "1",
                   "DATASET.NUM_SHOTS", "4", "MODEL.BACKBONE.NAME", world["clip"]] + SMALL_OPTS + list(extra),
                  check=check)


def test_class_transfer_problem_names_what_cannot_move():
    assert class_transfer_problem(["a", "b"], ["c", "d"], "", "M") == ""  # class-agnostic: any classes
    assert class_transfer_problem(None, ["c", "d"], "context", "M") == ""  # unknown: not refused
    assert class_transfer_problem(["a", "b"], ["a", "b"], "context", "M") == ""
    msg = class_transfer_problem(["a", "b"], ["c", "d"], "class-specific context", "M")
    assert "2 classes, 2 of them not trained on (e.g. 'c')" in msg and "class-specific context" in msg
    assert "in another order" in class_transfer_problem(["a", "b"], ["b", "a"], "x", "M")
    assert "1 of its 2 classes" in class_transfer_problem(["a", "b"], ["b"], "x", "M")


def test_class_specific_context_is_not_evaluated_on_the_new_classes(world, tmp_path):
    """Base-to-new with CSC True on the 6-class dataset (3 base, 3 new): the new-class evaluation
    loaded the base classes' contexts onto the new classes and reported an accuracy (33.3% here);
    now it is refused, naming the class-specific context. The same model on its own classes still
    evaluates (a shared context on new classes: tests/test_base2new.py)."""
    cfg = "configs/trainers/PTNL/rn50.yaml"
    base = str(tmp_path / "base")
    _train(world, base, "PTNL", cfg, ["TRAINER.PTNL.CSC", "True", "DATASET.SUBSAMPLE_CLASSES", "base"])
    proc = _evaluate(world, str(tmp_path / "new"), base, "PTNL", cfg, ["DATASET.SUBSAMPLE_CLASSES", "new"],
                     check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "what it learned per class (class-specific context) cannot score other classes" in proc.stderr
    assert not osp.exists(osp.join(tmp_path, "new", "evaluation.json"))
    _evaluate(world, str(tmp_path / "again"), base, "PTNL", cfg, ["DATASET.SUBSAMPLE_CLASSES", "base"])
    again = json.load(open(tmp_path / "again" / "evaluation.json"))
    assert again["accuracy"] == json.load(open(osp.join(base, "results.json")))["accuracy"]


def test_deep_prompt_shape_at_eval_only_is_the_trained_runs(world, tmp_path):
    """MaPLe trained with PROMPT_DEPTH 2: an evaluation whose config file says 9 (vit_b16.yaml) takes 2
    from the trained run (it failed on this 2-block CLIP before), and one given depth 1 on the command
    line is refused (it evaluated with the deeper prompts dropped before)."""
    cfg = "configs/trainers/MaPLe/vit_b16.yaml"
    run = str(tmp_path / "maple")
    _train(world, run, "MaPLe", cfg, ["TRAINER.MAPLE.PROMPT_DEPTH", "2"])
    _evaluate(world, str(tmp_path / "eval"), run, "MaPLe", cfg)
    ev = json.load(open(tmp_path / "eval" / "evaluation.json"))
    assert ev["config"]["TRAINER.MAPLE.PROMPT_DEPTH"] == 2
    assert ev["accuracy"] == json.load(open(osp.join(run, "results.json")))["accuracy"]
    proc = _evaluate(world, str(tmp_path / "eval1"), run, "MaPLe", cfg, ["TRAINER.MAPLE.PROMPT_DEPTH", "1"],
                     check=False)
    assert proc.returncode != 0 and "TRAINER.MAPLE.PROMPT_DEPTH (trained 2, given 1" in proc.stderr
    from ptnl.trainers.promptsrc import PromptSRC  # its prompt-shaping keys too
    assert {k.split(".")[-1] for k in PromptSRC.MODEL_KEYS} == {
        "N_CTX_TEXT", "N_CTX_VISION", "CTX_INIT", "PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION"}


def _run(folder, accuracy, seed, n_ctx, dataset="DescribableTextures", subsample="base"):
    """A finished run's results.json (the fields the protocols read) with N_CTX ``n_ctx``."""
    os.makedirs(folder)
    config = {"DATASET.NAME": dataset, "DATASET.SUBSAMPLE_CLASSES": subsample, "TRAINER.NAME": "PTNL",
              "TRAINER.PTNL.N_CTX": n_ctx, "SEED": seed, "OUTPUT_DIR": folder}
    record = {"accuracy": accuracy, "dataset": dataset, "trainer": "PTNL", "backbone": "RN50", "seed": seed,
              "num_shots": 16, "noise": {"type": "sym", "mode": "swap", "rate": 0.5}, "loss": "ce",
              "config": config}
    with open(osp.join(folder, "results.json"), "w") as f:
        json.dump(record, f)


def _evaluation(folder, model_dir, accuracy, dataset="DescribableTextures", subsample="new"):
    os.makedirs(folder)
    with open(osp.join(folder, "evaluation.json"), "w") as f:
        json.dump({"accuracy": accuracy, "model_dir": model_dir, "dataset": dataset, "kind": "evaluation",
                   "config": {"DATASET.NAME": dataset, "DATASET.SUBSAMPLE_CLASSES": subsample}}, f)


def test_protocol_tables_never_average_runs_of_other_settings(tmp_path):
    """Base-to-new runs of N_CTX 4 and 16 under one folder (base2.sh with NCTX=4 and NCTX=16): they were
    one row, their seeds pooled (base 70 = mean of 60, 60, 80, 80); now one row each, with the key
    that tells them apart, and the average over datasets takes each setting's own rows."""
    top = tmp_path / "out"
    for n_ctx, acc, new in ((4, 60.0, 40.0), (16, 80.0, 20.0)):
        for seed in (1, 2):
            run = str(top / "dtd" / "nctx{}".format(n_ctx) / "seed{}".format(seed))
            _run(run, acc, seed, n_ctx)
            _evaluation(str(top / "dtd-new" / "nctx{}".format(n_ctx) / "seed{}".format(seed)), run, new)
            other = str(top / "eurosat" / "nctx{}".format(n_ctx) / "seed{}".format(seed))
            _run(other, acc + 10, seed, n_ctx, dataset="EuroSAT")
            _evaluation(str(top / "eurosat-new" / "nctx{}".format(n_ctx) / "seed{}".format(seed)), other, new + 10,
                        dataset="EuroSAT")
    rows = base2new_rows(*collect([str(top)]))
    dtd = sorted((r for r in rows if r["dataset"] == "DescribableTextures"), key=lambda r: r["base"]["mean"])
    assert [(r["base"]["mean"], r["new"]["mean"], r["seeds"]) for r in dtd] == [(60.0, 40.0, [1, 2]),
                                                                                  (80.0, 20.0, [1, 2])]
    assert [r["differs"] for r in dtd] == ["TRAINER.PTNL.N_CTX=4", "TRAINER.PTNL.N_CTX=16"]
    table = format_base2new(rows)
    averages = [ln for ln in table.splitlines() if ln.startswith("average")]
    assert len(averages) == 2  # one per N_CTX, each over DTD and EuroSAT
    assert any("TRAINER.PTNL.N_CTX=4" in ln and "65.00" in ln and "45.00" in ln for ln in averages), table
    # cross-dataset: the two settings' evaluations on one target are not pooled either
    xd_top = tmp_path / "xd"
    for n_ctx, acc in ((4, 30.0), (16, 50.0)):
        run = str(xd_top / "imagenet" / "nctx{}".format(n_ctx) / "seed1")
        _run(run, acc, 1, n_ctx, dataset="ImageNet", subsample="all")
        _evaluation(str(xd_top / "xd-dtd" / "nctx{}".format(n_ctx) / "seed1"), run, acc / 2, subsample="all")
    xrows, targets = xd_rows(*collect([str(xd_top)]))
    assert sorted(r["targets"]["DescribableTextures"]["mean"] for r in xrows) == [15.0, 25.0]
    assert "TRAINER.PTNL.N_CTX=16" in format_xd(xrows, targets)



def test_an_empty_class_folder_of_an_imagenet_test_set_is_named(tmp_path):
    """ImageNet-A with one of its wnid folders empty: its label was in no item, so the class names
    (taken from the items) lost it and every later label was scored under the next class's name
    (3 names for labels 0, 2, 3 here); now the folder is named."""
    from test_xd import WNIDS, build, write_classnames, write_images
    ddir = str(tmp_path / "imagenet-adversarial")
    write_classnames(ddir)
    for k in (0, 2, 4):
        write_images(osp.join(ddir, "imagenet-a", WNIDS[k][0]), k)
    os.makedirs(osp.join(ddir, "imagenet-a", WNIDS[1][0]))
    with pytest.raises(Exception, match=r'class folder ".*{}" \(label 1, goldfish\) holds no images'.format(
            WNIDS[1][0])):
        build(str(tmp_path), "ImageNetA")


def test_base2new_evaluates_a_run_trained_again_after_its_evaluation(world, fresh_data, tmp_path):
    """A base run trained again (its folder deleted and the script rerun) kept its earlier model's
    new-class evaluation ("Evaluated already"), so H paired the new base accuracy with the old model's
    new accuracy; an evaluation older than the run's results.json is now made again."""
    import subprocess
    import time

    out = tmp_path / "out"
    env = dict(os.environ, DATA=fresh_data, OUT=str(out), CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="2",
               GROUP="0", PTNL_CACHE_DIR=str(tmp_path / "cache"))
    opts = SMALL_OPTS + ["OPTIM.MAX_EPOCH", "1"]

    def script():
        proc = subprocess.run(["bash", "scripts/ptnl/base2new.sh", "dtd", "rn50", "0.5", "ce", "PTNL"] + opts,
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout
    script()
    top = out / "dtd" / "PTNL" / "clip-vit" / "sym-swap-0.5" / "ce"
    results = top / "base2new" / "shots2_nctx16_cscFalse_ctpend" / "seed1" / "results.json"
    evaluation = top / "base2new-new" / "shots2_nctx16_cscFalse_ctpend" / "seed1" / "evaluation.json"
    first = evaluation.stat().st_mtime
    assert "Evaluated already" in script()  # nothing changed: not evaluated twice
    later = time.time() + 5
    os.utime(results, (later, later))  # the run trained again after its evaluation
    printed = script()
    assert "Evaluating again" in printed and "Evaluated already" not in printed
    assert evaluation.stat().st_mtime > first


def test_cocoop_evaluation_encodes_prompts_in_chunks(world, tmp_path, monkeypatch):
    """A CoCoOp test pass chunks its B x C prompts (PROMPTS_PER_PASS): the chunking asked the wrapper's
    ``training`` flag, which the trainers never clear (they switch only the prompt learner), so a test
    batch of 100 ImageNet images went through the text encoder as 100,000 prompts at once."""
    from ptnl import compat
    from ptnl.clip.text import TextEncoder
    from ptnl.config import extend_cfg
    from ptnl.trainers import cocoop
    import datasets  # noqa: F401  (registers the datasets)
    import trainers.ptnl  # noqa: F401  (registers the trainers)
    cfg = extend_cfg(compat.get_cfg_default())
    cfg.merge_from_file(osp.join(REPO, "configs/trainers/CoCoOp/vit_b16.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures", "DATASET.NUM_SHOTS", 4,
                         "SEED", 1, "TRAINER.NAME", "CoCoOp", "MODEL.BACKBONE.NAME", world["clip"],
                         "OUTPUT_DIR", str(tmp_path / "run")] + SMALL_OPTS)
    cfg.freeze()
    compat.set_random_seed(1)
    trainer = compat.build_trainer(cfg)
    sizes = []
    forward = TextEncoder.forward
    monkeypatch.setattr(TextEncoder, "forward", lambda self, prompts, *a, **k: (
        sizes.append(prompts.shape[0]), forward(self, prompts, *a, **k))[1])
    monkeypatch.setattr(cocoop, "PROMPTS_PER_PASS", 2 * trainer.num_classes)  # two images a pass
    trainer.test()
    assert sizes and max(sizes) <= 2 * trainer.num_classes, sizes[:3]


def test_linear_probe_is_not_evaluated_from_a_folder_without_its_classifier(world, tmp_path):
    """LinearProbe fits its classifier and tests it in one run and saves no checkpoint: --eval-only on
    its folder scored the untrained all-zero classifier (16.7% here, the share of class 0, against the
    run's 76.4%) and wrote it as the evaluation; now it is refused."""
    run = str(tmp_path / "probe")
    _train(world, run, "LinearProbe", "configs/trainers/LinearProbe/rn50.yaml")
    proc = _evaluate(world, str(tmp_path / "eval"), run, "LinearProbe", "configs/trainers/LinearProbe/rn50.yaml",
                     check=False)
    assert proc.returncode != 0 and "LinearProbe keeps no checkpoint" in proc.stderr, proc.stdout[-2000:]
    assert not osp.exists(osp.join(tmp_path, "eval", "evaluation.json"))
