"""Results that travel (docs/export.md): noisy-set files (python -m ptnl.noise export, DATASET.NOISE.FILE),
tuned prompts as safetensors for plain CLIP (python -m ptnl.export), CoOp's nearest-token reading
(python -m ptnl.interpret) and the training set's predicted probabilities (TRAINER.PTNL.SAVE_TRAIN_PROBS)."""
import json
import os
import os.path as osp
import struct
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, run_py, train_args

from ptnl.noise.files import check_header, file_rows, match_rows, read_noisy_set
from ptnl.noise.types import NoiseError

EXAMPLE = osp.join(REPO, "examples", "classify_with_exported_prompt.py")


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    """One noisy PTNL run (4 shots, 6 classes, sym swap 0.5, seed 1) that saved its test logits and its
    training set's probabilities, with its noisy set exported as CSV and JSON."""
    base = tmp_path_factory.mktemp("export")
    out = str(base / "run")
    run_py(train_args(world["data"], world["clip"], out, seed=1, epochs=2, extra=[
        "TRAINER.PTNL.SAVE_TEST_LOGITS", "True", "TRAINER.PTNL.SAVE_TRAIN_PROBS", "True"]))
    for ext in ("csv", "json"):
        proc = run_py(["-m", "ptnl.noise", "export", out, "--out", str(base / "set.{}".format(ext))])
        assert "24 items of DescribableTextures (sym swap rate 0.5, realised 0.5000)" in proc.stdout
    return {"dir": out, "base": base, "csv": str(base / "set.csv"), "json": str(base / "set.json"),
            "noise": json.load(open(osp.join(out, "noise.json"))),
            "results": json.load(open(osp.join(out, "results.json")))}


def _trained_set(noise, root):
    """(impath relative to root, true label, given label) of each item of a noise.json, in order."""
    return [(osp.relpath(s["impath"], root).replace(os.sep, "/"), s["true_label"], s["label"])
            for s in noise["samples"]]


# ----------------------------------------------------------------------------- noisy-set files
def test_noisy_set_file_lists_the_training_set_with_its_protocol(run, world):
    header, rows, columns = read_noisy_set(run["csv"])
    assert columns == ["label"]
    assert {k: header[k] for k in ("dataset", "shots", "seed", "protocol", "type", "rate", "realised_rate")} == {
        "dataset": "DescribableTextures", "shots": 4, "seed": 1, "protocol": "swap", "type": "sym", "rate": 0.5,
        "realised_rate": 0.5}
    assert header["classes"] == run["results"]["classnames"]
    assert header["split_file"] == "split_zhou_DescribableTextures.json" and len(header["split_sha256"]) == 64
    assert [(r["impath"], r["true_label"], r["label"]) for r in rows] == _trained_set(run["noise"], world["data"])
    assert all(r["classname"] == header["classes"][r["true_label"]] for r in rows)
    assert read_noisy_set(run["json"])[:2] == (header, rows)  # the JSON form holds the same table


def test_noisy_set_trains_on_exactly_those_labels_under_another_seed(run, world):
    out = str(run["base"] / "from-file")
    run_py(train_args(world["data"], world["clip"], out, seed=2, rate=0.0, epochs=1, extra=[
        "DATASET.NOISE.FILE", run["csv"], "TRAINER.PTNL.SAVE_TRAIN_PROBS", "True"]))
    noise = json.load(open(osp.join(out, "noise.json")))
    assert _trained_set(noise, world["data"]) == _trained_set(run["noise"], world["data"])
    assert noise["file"]["column"] == "label" and noise["realised_rate"] == 0.5
    # results.json lists the run under the file's protocol (sym swap 0.5), not the config's unused rate 0.0
    recorded = json.load(open(osp.join(out, "results.json")))["noise"]
    assert (recorded["type"], recorded["mode"], recorded["rate"]) == ("sym", "swap", 0.5), recorded
    # what the trainer trained on (its training items' labels), not only what was recorded
    trained = np.load(osp.join(out, "train_labels.npy"))
    assert trained.tolist() == [s["label"] for s in run["noise"]["samples"]]


def test_a_file_of_other_images_is_refused_with_one_line(run, world, tmp_path):
    text = open(run["csv"]).read().replace("dtd/images/", "dtd/pictures/", 1)
    bad = tmp_path / "moved.csv"
    bad.write_text(text)
    proc = run_py(train_args(world["data"], world["clip"], str(tmp_path / "out"), rate=0.0, epochs=1,
                             extra=["DATASET.NOISE.FILE", str(bad)]), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() + proc.stdout.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "row 1: image \"dtd/pictures/" in errors[0], proc.stderr[-2000:]
    assert "is not in this dataset's training split" in errors[0] and "Traceback" not in proc.stderr


def _pool(run):
    from ptnl import compat
    names = run["results"]["classnames"]
    return [compat.Datum(impath=s["impath"], label=s["true_label"], classname=names[s["true_label"]])
            for s in run["noise"]["samples"]]


def test_first_mismatch_is_named(run, world):
    header, rows, column = file_rows(run["csv"], "")
    names = list(header["classes"])
    with pytest.raises(NoiseError, match=r"is a noisy set of dataset DescribableTextures, this run's dataset is "
                                         r"OxfordPets"):
        check_header(header, dataset="OxfordPets", classnames=names, path="f.csv")
    with pytest.raises(NoiseError, match=r'class 2 is "braided" in the file and "plaited" in this dataset'):
        check_header(header, dataset=header["dataset"], classnames=names[:2] + ["plaited"] + names[3:], path="f.csv")
    with pytest.raises(NoiseError, match=r"the file lists 6 classes, this dataset has 7"):
        check_header(header, dataset=header["dataset"], classnames=names + ["extra"], path="f.csv")
    root = world["data"]
    known = {osp.relpath(d.impath, root).replace(os.sep, "/"): d for d in _pool(run)}
    rows[3] = dict(rows[3], true_label=(rows[3]["true_label"] + 1) % 6)
    with pytest.raises(NoiseError, match=r"row 4: image .* is class \d .* the file says true_label"):
        match_rows(rows, column, known, names, path="f.csv", root=root)


def test_multi_annotator_file_reads_the_chosen_column(run, world, tmp_path):
    """CIFAR-N style: several given-label columns; DATASET.NOISE.FILE_COLUMN picks one."""
    from types import SimpleNamespace
    from ptnl.noise import label_training_set
    header, rows, _ = read_noisy_set(run["json"])
    lines = ["# {}: {}".format(k, json.dumps(v)) for k, v in header.items()]
    lines.append("impath,classname,true_label,aggre,worse,random1")
    for i, r in enumerate(rows):
        lines.append("{},{},{},{},{},{}".format(r["impath"], r["classname"], r["true_label"], r["label"],
                                               (r["true_label"] + 1) % 6, r["true_label"] if i % 2 else r["label"]))
    path = tmp_path / "cifar-n-style.csv"
    path.write_text("\n".join(lines) + "\n")
    names = dict(enumerate(header["classes"]))

    def cfg(column):
        noise = SimpleNamespace(FILE=str(path), FILE_COLUMN=column, RATE=0.0, TYPE="sym", MODE="swap")
        return SimpleNamespace(DATASET=SimpleNamespace(NOISE=noise, NAME="DescribableTextures", ROOT=world["data"],
                                                       NUM_SHOTS=4), SEED=3)
    items, true, record = label_training_set(cfg("worse"), [], pool=_pool(run), lab2cname=names)
    assert [d.label for d in items] == [(t + 1) % 6 for t in true] and record["realised_rate"] == 1.0
    items, _, record = label_training_set(cfg("random1"), [], pool=_pool(run), lab2cname=names)
    assert record["file"]["column"] == "random1" and [d.label for d in items][1::2] == true[1::2]
    with pytest.raises(NoiseError, match=r'has no given-label column "label"; its label columns: aggre, worse, '
                                         r"random1 \(choose one with DATASET.NOISE.FILE_COLUMN\)"):
        label_training_set(cfg(""), [], pool=_pool(run), lab2cname=names)


# ----------------------------------------------------------------------------- prompts for plain CLIP
def _safetensors_header(path):
    """The JSON header of a safetensors file, read by hand: 8-byte length, then JSON; no pickle anywhere."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


@pytest.fixture(scope="module")
def prompt(run):
    path = str(run["base"] / "prompt.safetensors")
    proc = run_py(["-m", "ptnl.export", run["dir"], "--out", path])
    assert "6 classes, 16 context vectors" in proc.stdout
    return path


def test_prompt_file_is_safetensors_with_its_header(prompt, run, world):
    raw = _safetensors_header(prompt)
    assert {k: v["dtype"] for k, v in raw.items() if k != "__metadata__"} == {
        "text_features": "F32", "logit_scale": "F32", "ctx": "F32"}
    assert raw["text_features"]["shape"][0] == 6 and raw["ctx"]["shape"][0] == 16 and raw["logit_scale"]["shape"] == []
    header = json.loads(raw["__metadata__"]["ptnl"])
    assert header["classnames"] == run["results"]["classnames"] and header["backbone"] == world["clip"]
    assert header["test_accuracy"] == run["results"]["accuracy"] and len(header["weights_sha256"]) == 64
    assert header["prompt"]["n_ctx"] == 16 and header["prompt"]["csc"] is False


def test_exported_prompt_gives_the_runs_logits_with_plain_clip(prompt, run):
    """The example's own functions (plain ``clip``, the file): the run's test logits, and its train_probs."""
    sys.path.insert(0, osp.dirname(EXAMPLE))
    try:
        import classify_with_exported_prompt as example
    finally:
        sys.path.remove(osp.dirname(EXAMPLE))
    from PIL import Image
    from safetensors import safe_open
    saved = torch.load(osp.join(run["dir"], "test_logits.pt"), weights_only=True)
    with safe_open(prompt, "pt") as f:
        text, scale = f.get_tensor("text_features"), f.get_tensor("logit_scale")
        backbone = json.loads(f.metadata()["ptnl"])["backbone"]
    model, preprocess = example.load_backbone(backbone, "cpu")

    def logits(paths):
        with torch.no_grad():
            feats = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in paths])).float()
        return scale * feats / feats.norm(dim=-1, keepdim=True) @ text.t()
    got = logits(saved["impaths"])
    # measured: largest difference 1.2e-6 (same CPU fp32 computation, other code path)
    assert torch.allclose(got, saved["logits"], atol=1e-4), (got - saved["logits"]).abs().max()
    train = [s["impath"] for s in run["noise"]["samples"]]
    probs = np.load(osp.join(run["dir"], "train_probs.npy"))
    assert np.allclose(torch.softmax(logits(train), dim=-1).numpy(), probs, atol=1e-5)


@pytest.fixture(scope="module")
def pocket_run(tmp_path_factory):
    """A PTNL run on the pocket world (a pretrained small CLIP: predictions well above chance), 4 shots,
    sym swap 0.25, that saved its test logits and training-set probabilities; its prompt exported."""
    from ptnl.pocket import build as build_world
    world = build_world(os.environ.get("PTNL_TEST_POCKET_CACHE") or os.environ["PTNL_CACHE_DIR"])
    base = tmp_path_factory.mktemp("pocket-export")
    out, prompt = str(base / "run"), str(base / "prompt.safetensors")
    run_py(["train.py", "--root", world["root"], "--trainer", "PTNL", "--seed", "1", "--output-dir", out,
            "--dataset-config-file", "configs/datasets/dtd.yaml", "--config-file", "configs/trainers/PTNL/rn50.yaml",
            "MODEL.BACKBONE.NAME", "pocket", "DATASET.NUM_SHOTS", "4", "DATASET.NOISE.RATE", "0.25",
            "OPTIM.MAX_EPOCH", "2", "INPUT.SIZE", "(64, 64)", "DATALOADER.NUM_WORKERS", "0",
            "TRAINER.PTNL.SAVE_TEST_LOGITS", "True", "TRAINER.PTNL.SAVE_TRAIN_PROBS", "True"])
    run_py(["-m", "ptnl.export", out, "--out", prompt])
    return {"dir": out, "prompt": prompt, "weights": world["weights"],
            "noise": json.load(open(osp.join(out, "noise.json"))),
            "results": json.load(open(osp.join(out, "results.json")))}


def test_example_script_gets_the_runs_accuracy(pocket_run):
    """The example as a user runs it (plain clip, the file, the weights file): the run's own accuracy."""
    saved = torch.load(osp.join(pocket_run["dir"], "test_logits.pt"), weights_only=True)
    names = pocket_run["results"]["classnames"]
    proc = run_py([EXAMPLE, pocket_run["prompt"]] + list(saved["impaths"]) + ["--backbone", pocket_run["weights"]])
    predicted = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines())
    correct = [names.index(predicted[p]) == int(y) for p, y in zip(saved["impaths"], saved["labels"])]
    accuracy = 100.0 * sum(correct) / len(correct)
    assert accuracy == pytest.approx(pocket_run["results"]["accuracy"], abs=1e-9)
    assert accuracy > 2 * 100.0 / len(names)  # measured 34.2% and 34.4% (chance 8.3%): not a constant classifier


# ----------------------------------------------------------------------------- interpretation
def test_interpret_prints_k_tokens_per_context_vector(prompt, run, capsys, tmp_path):
    from ptnl.interpret import main
    out = tmp_path / "words.json"
    assert main([run["dir"], "--top", "3", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ctx")]
    assert len(lines) == 16 and all(line.count("(") == 3 for line in lines)
    saved = json.load(open(out))
    assert saved["top"] == 3 and len(saved["context"]) == 16
    assert all(len(v) == 3 and v[0]["distance"] <= v[2]["distance"] for v in saved["context"])


def test_nearest_tokens_of_a_class_specific_context():
    from ptnl.interpret import nearest_tokens
    table = torch.eye(5)  # token i's embedding is the i-th unit vector
    ctx = torch.stack([torch.eye(5)[[4, 1]], torch.eye(5)[[0, 3]] * 1.5])  # [C=2, n=2, D=5]
    dist, ids = nearest_tokens(ctx, table, 2)
    assert ids.shape == (2, 2, 2) and ids[..., 0].tolist() == [[4, 1], [0, 3]]
    assert dist[1, 0, 0].item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- probabilities for cleanlab
def test_train_probs_are_in_cleanlabs_layout(run):
    probs = np.load(osp.join(run["dir"], "train_probs.npy"), allow_pickle=False)
    labels = np.load(osp.join(run["dir"], "train_labels.npy"), allow_pickle=False)
    assert probs.shape == (24, 6) and probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert labels.tolist() == [s["label"] for s in run["noise"]["samples"]]


def test_cleanlab_flags_against_the_true_noise(pocket_run):
    cleanlab = pytest.importorskip("cleanlab.filter")
    probs = np.load(osp.join(pocket_run["dir"], "train_probs.npy"))
    labels = np.load(osp.join(pocket_run["dir"], "train_labels.npy"))
    flagged = cleanlab.find_label_issues(labels, probs)
    noisy = np.array([s["label"] != s["true_label"] for s in pocket_run["noise"]["samples"]])
    hits = int((flagged & noisy).sum())
    print("cleanlab: {} flagged, precision {:.2f}, recall {:.2f}".format(
        int(flagged.sum()), hits / max(int(flagged.sum()), 1), hits / int(noisy.sum())))
    assert flagged.shape == noisy.shape  # nothing asserted about cleanlab's quality


# ----------------------------------------------------------------------------- the commands
@pytest.mark.parametrize("module, argv, expected", [
    ("ptnl.export", ["--help"], "--out FILE"), ("ptnl.interpret", ["--help"], "--top K"),
    ("ptnl.noise.__main__", ["--help"], "export"), ("ptnl.noise.__main__", ["export", "--help"], "--root DIR")])
def test_every_command_has_help(module, argv, expected, capsys):
    import importlib
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    assert e.value.code == 0 and expected in capsys.readouterr().out


def test_bad_input_is_one_error_line(run, capsys, tmp_path):
    from ptnl.export import main as export
    from ptnl.interpret import main as interpret
    from ptnl.noise.__main__ import main as noise
    cases = [
        (export, [str(tmp_path / "none"), "--out", "p.safetensors"], 'Run folder "{}" does not exist'),
        (export, [run["dir"], "--out", str(tmp_path / "p.pt")], "--out must name a .safetensors file"),
        (interpret, [str(tmp_path), "--top", "3"], "No results.json in"),
        (interpret, [run["dir"], "--top", "0"], "--top must be between 1 and the vocabulary size"),
        (noise, ["export", str(tmp_path), "--out", str(tmp_path / "s.csv")], "No noise.json in"),
        (noise, ["export", run["dir"], "--out", str(tmp_path / "s.txt")], 'expected a .csv or .json name, got ".txt"'),
    ]
    for fn, argv, expected in cases:
        assert fn(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("Error: ") and expected.format(tmp_path / "none") in err[0], err
    assert not os.listdir(tmp_path)  # nothing written
