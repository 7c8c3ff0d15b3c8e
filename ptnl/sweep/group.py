"""Which runs of a plan go to one process (``train.py --group``): the plan's unfinished runs of the
groupable trainers whose command lines differ only in what each member optimises (trainer, its
config file, output folder, loss and prompt options). This is a proposal read from the command
lines; ``train.py --group`` applies the stated rule to the resolved configs (``ptnl.trainers.group``)
and trains separately whatever does not share the stream. ``GROUP=0`` turns grouping off.

The groupable trainers are those whose class says ``GROUPABLE`` (or inherits it), read from the
trainer modules' source (``ptnl/trainers`` and the ``.py`` files of ``PTNL_PLUGINS``) without importing
them: the sweep runs without torch."""
import ast
import functools
import importlib.util
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ptnl.io import write_json_atomic

TRAINERS_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "trainers")  # ptnl/trainers
# train.py flags with one value, and with several
_VALUE_FLAGS = {"--root", "--output-dir", "--resume", "--seed", "--config-file", "--dataset-config-file",
                "--trainer", "--backbone", "--head", "--model-dir", "--load-epoch", "--group"}
_LIST_FLAGS = {"--source-domains", "--target-domains", "--transforms"}
_MEMBER_FLAGS = {"--output-dir", "--trainer", "--config-file"}
# trailing KEY VALUE options each member may set its own way
MEMBER_OPTS = {"TRAINER.PTNL." + k for k in (
    "LOSS", "GCE_Q", "SCE_ALPHA", "SCE_BETA", "NCE_ALPHA", "NCE_BETA", "RCE_A", "N_CTX", "CSC", "CTX_INIT",
    "CTX_INIT_MODE", "CLASS_TOKEN_POSITION", "SAVE_TEST_LOGITS", "ANALYSIS", "KEEP_CHECKPOINTS", "STACK")}
# under the flip protocol these relabel the same items (ptnl.trainers.stacked.LABEL_ONLY): members' own too
FLIP_MEMBER_OPTS = {"DATASET.NOISE.RATE", "DATASET.NOISE.TYPE"}


def _plugin_files(spec: str) -> List[str]:
    """The source files of the plugins named in ``spec`` (PTNL_PLUGINS): paths, or modules' origins."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if item.endswith(".py") or os.sep in item:
            out.append(osp.abspath(osp.expanduser(item)))
        elif item:
            try:
                found = importlib.util.find_spec(item)
            except (ImportError, ValueError):
                found = None
            if found is not None and found.origin and found.origin.endswith(".py"):
                out.append(found.origin)
    return out


def _base_name(node) -> Optional[str]:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


@functools.lru_cache(maxsize=None)
def _classes_of(path: str, mtime: float) -> Dict[str, Tuple[List[str], Optional[bool], bool]]:
    """{class name: (base names, its own GROUPABLE or None, registered with @register_trainer)} of the
    classes in the file ``path`` (as of ``mtime``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        own = None
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "GROUPABLE"
                                                    for t in stmt.targets):
                own = stmt.value.value is True if isinstance(stmt.value, ast.Constant) else False
        registered = any(_base_name(d) == "register_trainer" for d in node.decorator_list)
        out[node.name] = ([b for b in map(_base_name, node.bases) if b], own, registered)
    return out


def groupable_trainers(files: Optional[Iterable[str]] = None) -> Set[str]:
    """The registered trainers (``@register_trainer``) whose class sets ``GROUPABLE = True``, or
    inherits it from the nearest base that sets it, read from the classes' source: every module under
    ``ptnl/trainers`` and the plugin files (``files``, default PTNL_PLUGINS's)."""
    if files is None:
        files = _plugin_files(os.environ.get("PTNL_PLUGINS", ""))
    paths = [osp.join(d, f) for d, _, names in sorted(os.walk(TRAINERS_DIR))
             for f in sorted(names) if f.endswith(".py")]
    classes: Dict[str, Tuple[List[str], Optional[bool], bool]] = {}  # name: (bases, own GROUPABLE, registered)
    for path in paths + [f for f in files if osp.isfile(f)]:
        classes.update(_classes_of(path, osp.getmtime(path)))

    def says(name, seen=()):
        if name not in classes or name in seen:
            return False
        bases, own, _ = classes[name]
        if own is not None:
            return own
        return next((says(b, seen + (name,)) for b in bases if b in classes), False)
    return {name for name, (_, _, registered) in classes.items() if registered and says(name)}


def enabled(env=None) -> bool:
    return (env if env is not None else os.environ).get("GROUP", "1") not in ("0", "")


def stacking(env=None) -> bool:
    """False with STACK=0: a group's runs of one prompt shape keep their own text passes
    (``TRAINER.PTNL.STACK False``; ``ptnl.trainers.stacked``)."""
    return (env if env is not None else os.environ).get("STACK", "1") not in ("0", "")


def split_argv(argv: List[str]) -> Optional[Tuple[List[str], Dict, List[str]]]:
    """(``python train.py`` prefix, flags, KEY VALUE options) of a run's command line; None when
    it is not a plain train.py call."""
    i = next((k for k, a in enumerate(argv) if osp.basename(a) == "train.py"), None)
    if i is None:
        return None
    flags, opts, rest = {}, [], argv[i + 1:]
    k = 0
    while k < len(rest):
        a = rest[k]
        if a in _VALUE_FLAGS:
            flags[a] = rest[k + 1] if k + 1 < len(rest) else ""
            k += 2
        elif a in _LIST_FLAGS:
            j = k + 1
            while j < len(rest) and not rest[j].startswith("--") and not rest[j].isupper():
                j += 1
            flags[a] = tuple(rest[k + 1:j])
            k = j
        elif a.startswith("--"):
            flags[a] = True
            k += 1
        else:
            opts = rest[k:]
            break
    return argv[:i + 1], flags, opts


def proposal_key(argv: List[str], groupable: Optional[Set[str]] = None):
    """What members of one group share in their command lines; None for a run that is never grouped.
    ``groupable``: the groupable trainers (default ``groupable_trainers()``)."""
    parts = split_argv(argv)
    if parts is None:
        return None
    prefix, flags, opts = parts
    groupable = groupable_trainers() if groupable is None else groupable
    if flags.get("--trainer") not in groupable or len(opts) % 2:
        return None
    if any(flags.get(f) for f in ("--eval-only", "--no-train", "--dry-run", "--group", "--resume")):
        return None
    shared_flags = tuple(sorted((k, v) for k, v in flags.items() if k not in _MEMBER_FLAGS))
    pairs = dict(zip(opts[0::2], opts[1::2]))  # the last value of a key wins, as in yacs
    own = MEMBER_OPTS | (FLIP_MEMBER_OPTS if pairs.get("DATASET.NOISE.MODE") == "flip"
                         and not pairs.get("DATASET.NOISE.FILE") else set())
    shared_opts = tuple(sorted((k, v) for k, v in pairs.items() if k not in own))
    return tuple(prefix), shared_flags, shared_opts


def propose(runs: List[Dict], todo: List[int], max_size: int = 0) -> List[List[int]]:
    """The indices ``todo`` of ``runs`` in groups (each group in plan order, groups in order of
    their first run); runs that are never grouped stay alone. ``max_size`` > 0 caps a group."""
    groups: Dict[object, List[List[int]]] = {}
    order: List[List[int]] = []
    groupable = groupable_trainers()
    for i in todo:
        key = proposal_key(runs[i]["argv"], groupable)
        if key is None:
            order.append([i])
            continue
        bucket = groups.setdefault(key, [])
        if not bucket or (max_size and len(bucket[-1]) >= max_size):
            bucket.append([])
            order.append(bucket[-1])
        bucket[-1].append(i)
    return order


def group_argv(runs: List[Dict], members: List[int], path: str) -> List[str]:
    """Write the members' train.py arguments to ``path``; the command line that trains them."""
    prefix, _, _ = split_argv(runs[members[0]]["argv"])
    write_json_atomic(path, member_args(runs, members))
    return list(prefix) + ["--group", path]


def member_args(runs: List[Dict], members: List[int], env=None) -> List[List[str]]:
    """Each member's train.py arguments; ``TRAINER.PTNL.STACK False`` appended under STACK=0."""
    prefix, _, _ = split_argv(runs[members[0]]["argv"])
    off = [] if stacking(env) else ["TRAINER.PTNL.STACK", "False"]
    return [runs[i]["argv"][len(prefix):] + off for i in members]
