"""A newcomer's first hour with train.py: missing flags named, flags after the KEY VALUE pairs,
dry runs that check what a run checks, eval-only from the newest epoch, one line for an error or
a Ctrl-C (also in log.txt), a compact terminal, files others can read, the README's commands."""
import io
import json
import os
import os.path as osp
import re
import shlex
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMALL_OPTS, run_main, terminal_sigint, train_args

import train  # noqa: E402  (registers the datasets and trainers)


def base_argv(extra=(), config=True, root="/nonexistent"):
    argv = ["--trainer", "PTNL", "--root", root, "--dataset-config-file",
            osp.join(REPO, "configs/datasets/dtd.yaml")]
    if config:
        argv += ["--config-file", osp.join(REPO, "configs/trainers/PTNL/rn50.yaml")]
    return argv + list(extra)


# ----------------------------------------------------------------------------- the command line
def test_missing_trainer_and_dataset_are_named_and_nothing_is_written(monkeypatch, tmp_path):
    with pytest.raises(ValueError) as e:
        run_main(["--root", "/data", "MODEL.BACKBONE.NAME", "pocket", "INPUT.SIZE", "(64, 64)"],
                 monkeypatch, tmp_path)
    msg = str(e.value)
    assert "Missing --trainer" in msg and "--dataset-config-file" in msg and "DATASET.NAME" in msg
    assert "Example: python train.py --trainer PTNL" in msg
    assert os.listdir(tmp_path) == []  # no ./output/log.txt hiding the finished runs next to it


def test_missing_dataset_alone(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"^Missing --dataset-config-file"):
        run_main(["--trainer", "PTNL"], monkeypatch, tmp_path)


def test_flag_after_the_key_value_pairs_is_named(monkeypatch, tmp_path):
    with pytest.raises(ValueError) as e:
        run_main(base_argv(["DATASET.NUM_SHOTS", "16", "--eval-only", "--model-dir", "out"]), monkeypatch, tmp_path)
    assert str(e.value).startswith("--eval-only, --model-dir come after the KEY VALUE pairs: flags must come "
                                   "before them")
    assert "odd length" not in str(e.value)


@pytest.mark.parametrize("opts, words", [
    (["TRAINER.PTNL.LOSS", "gcee"], ["gcee", "gce"]),
    (["DATASET.NOISE.RATE", "1.5"], ["[0, 1)", "1.5"]),
    (["TRAINER.PTNL.PREC", "fp8"], ["fp8", "TRAINER.PTNL.PREC"]),
])
def test_dry_run_checks_what_a_run_checks(opts, words, monkeypatch, tmp_path):
    with pytest.raises(ValueError) as e:
        run_main(base_argv(["--dry-run"] + opts), monkeypatch, tmp_path)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_dry_run_unknown_trainer(monkeypatch, tmp_path):
    argv = base_argv(["--dry-run"])
    argv[argv.index("PTNL")] = "PTNX"
    with pytest.raises(ValueError, match=r"'PTNL'.*\[PTNX\].*\[PTNL\]"):
        run_main(argv, monkeypatch, tmp_path)


def data_root(tmp_path):
    """A --root whose dtd/ folder exists (dry runs check it; they read no image)."""
    os.makedirs(tmp_path / "data" / "dtd", exist_ok=True)
    return str(tmp_path / "data")


def test_no_config_file_warns_about_the_optimiser(monkeypatch, tmp_path):
    root = data_root(tmp_path)
    out = run_main(base_argv(["--dry-run", "MODEL.BACKBONE.NAME", "RN50"], config=False, root=root),
                   monkeypatch, tmp_path)
    warning = [ln for ln in out.splitlines() if ln.startswith("Warning: no --config-file")]
    assert len(warning) == 1 and "OPTIM.NAME adam" in warning[0] and "configs/trainers/PTNL/" in warning[0]
    assert "rn50.yaml" in warning[0]
    out = run_main(base_argv(["--dry-run"], root=root), monkeypatch, tmp_path)
    assert "Warning" not in out


def readme_block(marker, page="README.md"):
    """The command of a ```bash block in ``page`` (README or docs/) that contains ``marker``."""
    text = open(osp.join(REPO, page)).read()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if marker in line:
                return line.split("#")[0].strip()
    raise AssertionError("no README command with " + marker)


def test_readme_pocket_one_liner_passes_the_checks(monkeypatch, tmp_path):
    cmd = readme_block('--root "$(python -m ptnl.pocket --field root)"', "docs/pocket.md")
    cmd = cmd.replace('"$(python -m ptnl.pocket --field root)"', data_root(tmp_path))
    argv = shlex.split(cmd)
    assert argv[:2] == ["python", "train.py"]
    argv = [a if not a.startswith("configs/") else osp.join(REPO, a) for a in argv[2:]]
    out = run_main(["--dry-run"] + argv, monkeypatch, tmp_path)
    assert "NAME: DescribableTextures" in out and "Warning" not in out


def test_docs_describe_every_run_file():
    text = open(osp.join(REPO, "docs", "running.md")).read()
    outputs = text.split("### Outputs of a run", 1)[1].split("\n## ", 1)[0]
    for name in ("log.txt", "results.json", "noise.json", "epochs.json", "model.pth.tar-", "tensorboard/",
                 "--verbose", "Error: ", "Interrupted at epoch"):
        assert name in outputs, name
    eval_only = readme_block("--eval-only", "docs/running.md")
    assert eval_only.index("--eval-only") < eval_only.index("DATASET.")  # flags before KEY VALUE pairs


# ----------------------------------------------------------------------------- exit lines
def test_interrupted_message_names_the_epoch(tmp_path):
    from ptnl.cli.exits import interrupted_message

    class T:
        epoch, max_epoch, output_dir = 4, 50, str(tmp_path)
    assert interrupted_message(T()) == ("Interrupted at epoch 5/50: re-run the same command to start again "
                                        "(no checkpoint was written yet).")
    os.makedirs(tmp_path / "prompt_learner")
    (tmp_path / "prompt_learner" / "model.pth.tar-4").write_bytes(b"")
    # the epoch a re-run resumes from is the one main.sh's "Resuming: DIR (from epoch 4)" names (issue 29, 11)
    assert interrupted_message(T()) == ("Interrupted at epoch 5/50: re-run the same command to resume from "
                                        "epoch 4 (the newest checkpoint).")


# ----------------------------------------------------------------------------- files and output
@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(umask, expected, tmp_path):
    from ptnl.io import atomic_write, cache, process_umask, write_json_atomic
    old = os.umask(umask)
    try:
        assert process_umask() == umask and os.umask(umask) == umask  # read without changing it
        write_json_atomic(str(tmp_path / "results.json"), {"a": 1})
        atomic_write(str(tmp_path / "x.ptnl.json"), lambda f: f.write("{}"))
        cache.save("k", {"x": 1}, root=str(tmp_path / "cache"))
        private = str(tmp_path / "private")
        atomic_write(private, lambda f: f.write("x"), public=False)
    finally:
        os.umask(old)
    for path in (tmp_path / "results.json", tmp_path / "x.ptnl.json", cache.entry_path("k", str(tmp_path / "cache"))):
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600


def test_only_the_io_layer_makes_temporary_files():
    hits = []
    for dirpath, _, files in os.walk(osp.join(REPO, "ptnl")):
        for f in files:
            if f.endswith(".py"):
                path = osp.join(dirpath, f)
                if re.search(r"mkstemp|NamedTemporaryFile", open(path).read()):
                    hits.append(osp.relpath(path, REPO))
    assert hits == [osp.join("ptnl", "io", "__init__.py")]


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from ptnl.engine.utils import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    items = [1, 2, 3]
    assert progress(items) is items  # pytest captures stdout: not a TTY
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress(items)
    assert bar is not items and list(bar) == items
    assert progress(items, disable=True) is items


def test_no_tensorboard_folder_without_a_writer(tmp_path, monkeypatch):
    from ptnl.engine.trainer import TrainerBase
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    t = TrainerBase()
    t.init_writer(str(tmp_path / "tensorboard"))
    assert not osp.exists(tmp_path / "tensorboard")


# ----------------------------------------------------------------------------- real runs
def popen(args, umask=None):
    def child():
        terminal_sigint()  # the Ctrl-C test's SIGINT must reach the run as it would from a terminal
        if umask is not None:
            os.umask(umask)
    return subprocess.Popen([sys.executable] + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=child)


def test_run_then_eval_only_from_the_newest_epoch(world, tmp_path):
    from ptnl import compat
    out = str(tmp_path / "run")
    proc = popen(train_args(world["data"], world["clip"], out, epochs=2, loss="ce"), umask=0o002)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    # a compact terminal; the full record in log.txt
    log = open(osp.join(out, "log.txt")).read()
    assert log.startswith("PTNL engine: ")
    assert "** Config **" in log and "** System info **" in log
    assert "** Config **" not in stdout and "System info" not in stdout
    assert "Run: PTNL on DescribableTextures" in stdout and "Output: " + out in stdout
    assert len(stdout.splitlines()) < 80, len(stdout.splitlines())
    assert "it/s]" not in stderr  # no progress bars when not on a terminal
    if compat.ENGINE == "builtin":
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            assert not osp.exists(osp.join(out, "tensorboard"))
    # files others can read (umask 002)
    for name in ("results.json", "noise.json", "epochs.json"):
        assert stat.S_IMODE(os.stat(osp.join(out, name)).st_mode) == 0o664, name
    trained = json.load(open(osp.join(out, "results.json")))["accuracy"]
    # eval-only without --load-epoch: no model-best.pth.tar, so the newest epoch, named
    ev = str(tmp_path / "eval")
    args = train_args(world["data"], world["clip"], ev, epochs=2, loss="ce")
    proc = popen(args[:1] + ["--eval-only", "--model-dir", out] + args[1:])
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "loading the newest checkpoint, epoch 2 (model.pth.tar-2)" in stdout
    assert re.findall(r"\* accuracy: ([\d.]+)%", stdout)[-1] == "{:.1f}".format(trained)


def test_a_failed_run_says_why_in_its_log(world, tmp_path):
    os.makedirs(tmp_path / "d" / "dtd")
    out = str(tmp_path / "bad")
    os.makedirs(out)  # a folder that was there (a run to resume) keeps its log, which says why it stopped
    proc = popen(train_args(str(tmp_path / "d"), world["clip"], out, epochs=1))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2
    errors = [ln for ln in stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "split_zhou_DescribableTextures.json" in errors[0]
    last = open(osp.join(out, "log.txt")).read().splitlines()[-1]
    assert last == errors[0]
    # a folder this command made is removed: nothing for ptnl.report to list as incomplete (issue 29, 8)
    fresh = str(tmp_path / "out" / "fresh")
    proc = popen(train_args(str(tmp_path / "d"), world["clip"], fresh, epochs=1))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "split_zhou_DescribableTextures.json" in stderr
    assert not osp.exists(tmp_path / "out")


def test_ctrl_c_is_one_line_and_exit_130(world, tmp_path):
    out = str(tmp_path / "run")
    proc = popen(train_args(world["data"], world["clip"], out, epochs=40, rate=0.25))
    marker = osp.join(out, "prompt_learner", "checkpoint")
    deadline = time.time() + 300
    while time.time() < deadline and not osp.isfile(marker):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("Interrupted at epoch")]
    from ptnl.runs.files import newest_checkpoint
    assert len(lines) == 1 and re.fullmatch(
        r"Interrupted at epoch \d+/40: re-run the same command to resume from epoch {} \(the newest "
        r"checkpoint\)\.".format(newest_checkpoint(out)), lines[0]), stderr[-2000:]
    assert open(osp.join(out, "log.txt")).read().splitlines()[-1] == lines[0]


def test_n_ctx_0_says_it_trains_nothing(world, tmp_path):
    out = str(tmp_path / "run")
    proc = popen(train_args(world["data"], world["clip"], out, epochs=1, extra=["TRAINER.PTNL.N_CTX", "0"]))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    warning = "WARNING: TRAINER.PTNL.N_CTX 0 leaves PTNL nothing to train"
    assert warning in stdout and warning in open(osp.join(out, "log.txt")).read()
