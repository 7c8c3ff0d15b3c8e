import atexit
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import types

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import tempfile

os.environ.setdefault("PTNL_OFFLINE", "1")  # nothing downloads in tests
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: one thread per worker (and its scripts), not N x cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# caches of this test session (and of the scripts it runs) stay out of the user's cache folder
os.environ["PTNL_CACHE_DIR"] = tempfile.mkdtemp(prefix="ptnl-test-cache-")
atexit.register(shutil.rmtree, os.environ["PTNL_CACHE_DIR"], True)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A generated DTD-layout dataset (6 classes x 40 images) and a small CLIP weights file."""
    from ptnl.data.generated import make_clip, make_dtd
    root = tmp_path_factory.mktemp("world")
    make_dtd(str(root / "data"), num_classes=6, per_class=40, size=36)
    clip_path = make_clip(str(root / "clip-vit.pt"), kind="vit")
    return {"root": str(root), "data": str(root / "data"), "clip": clip_path}


@pytest.fixture
def fresh_data(tmp_path):
    """A private copy of the generated dataset (tests that write caches or splits)."""
    from ptnl.data.generated import make_dtd
    make_dtd(str(tmp_path / "data"), num_classes=6, per_class=40, size=36)
    return str(tmp_path / "data")


SMALL_OPTS = ["INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
              "DATALOADER.TEST.BATCH_SIZE", "50"]


def run_py(args, env=None, cwd=REPO, check=True, timeout=600):
    """Run a python command from the repository root; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable] + args, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("command failed ({}): {}\nSTDOUT:\n{}\nSTDERR:\n{}".format(
            proc.returncode, args, proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc


def run_main(argv, monkeypatch, tmp_path):
    """train.py's main in this process, from an empty working folder; returns its stdout."""
    import io

    import train  # noqa: F401  (registers the datasets and trainers)
    from ptnl import cli
    from ptnl.cli.parser import build_parser
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    cli.main(build_parser().parse_args(argv))
    return out.getvalue()


def train_args(data, clip, out, seed=1, shots=4, rate=0.5, loss="gce", epochs=3, extra=()):
    return ["train.py", "--root", data, "--trainer", "PTNL", "--seed", str(seed),
            "--dataset-config-file", "configs/datasets/dtd.yaml",
            "--config-file", "configs/trainers/PTNL/rn50.yaml", "--output-dir", out,
            "DATASET.NUM_SHOTS", str(shots), "DATASET.NOISE.RATE", str(rate), "TRAINER.PTNL.LOSS", loss,
            "MODEL.BACKBONE.NAME", clip, "OPTIM.MAX_EPOCH", str(epochs)] + SMALL_OPTS + list(extra)


def coop_pickle(data, monkeypatch):
    """Pickle ``data`` (dict of Datum lists) the way CoOp's files are: objects of the Dassl class."""
    from ptnl import compat
    if compat.ENGINE == "dassl":
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    mod = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:
        pass
    Datum.__module__ = mod.__name__
    Datum.__qualname__ = "Datum"
    mod.Datum = Datum
    for m in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, m, types.ModuleType(m))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)

    def convert(d):
        x = Datum()
        x.__dict__.update(d.__dict__)
        return x
    payload = pickle.dumps({k: [convert(d) for d in v] for k, v in data.items()})
    monkeypatch.undo()
    return payload


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A single-node SLURM with two fake GPUs and MaxArraySize 3 (so four runs are two array
    chunks); SLURM_CONF is set for the session's clients. Skipped where SLURM is not installed
    (.ci/run installs Debian's slurm-wlm)."""
    from slurm_cluster import Cluster, missing_tools
    missing = missing_tools()
    if missing:
        pytest.skip("SLURM is not installed (no {}); apt-get install slurm-wlm".format(", ".join(missing)))
    if os.geteuid() != 0:
        pytest.skip("the test SLURM runs its daemons as root (SlurmUser=root)")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"), max_array_size=3).start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = cluster.conf
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N --dist loadgroup`` (CI): a module's tests stay in one worker (their
    module fixtures and order), and every test of the session's SLURM cluster shares one worker."""
    for item in items:
        group = "slurm" if "slurm" in getattr(item, "fixturenames", ()) else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))



def terminal_sigint():
    """A child process's SIGINT as a terminal gives it (default action, not blocked), whatever the
    test process inherited: a pytest-xdist worker may hold SIGINT ignored or blocked, and a child
    inherits both, so a test of Ctrl-C would see it never arrive. For ``preexec_fn``."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
