"""Which runs of a plan go to one process (``train.py --group``): the plan's unfinished runs of the
groupable trainers whose command lines differ only in what each member optimises (trainer, its
config file, output folder, loss and prompt options). This is a proposal read from the command
lines; ``train.py --group`` applies the stated rule to the resolved configs (``ptnl.trainers.group``)
and trains separately whatever does not share the stream. ``GROUP=0`` turns grouping off.

The groupable trainers are those whose class says ``GROUPABLE`` (or inherits it), read from the
trainer modules' source (``ptnl/trainers`` and the ``.py`` files of ``PTNL_PLUGINS``) without importing
them (``ptnl.io.trainer_classes``): the sweep runs without torch. Each member's own options are the
prompt keys below and every registered loss's options (a plugin loss's too: the sweep imports
``PTNL_PLUGINS``)."""
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ptnl.io import write_json_atomic
from ptnl.io.trainer_classes import declared
from ptnl.losses import option_keys

# train.py flags with one value, and with several
_VALUE_FLAGS = {"--root", "--output-dir", "--resume", "--seed", "--config-file", "--dataset-config-file",
                "--trainer", "--backbone", "--head", "--model-dir", "--load-epoch", "--group"}
_LIST_FLAGS = {"--source-domains", "--target-domains", "--transforms"}
_MEMBER_FLAGS = {"--output-dir", "--trainer", "--config-file"}
# trailing KEY VALUE options each member may set its own way, besides the losses' options (member_opts)
PROMPT_OPTS = {"TRAINER.PTNL." + k for k in (
    "LOSS", "N_CTX", "CSC", "CTX_INIT", "CTX_INIT_MODE", "CLASS_TOKEN_POSITION", "SAVE_TEST_LOGITS", "ANALYSIS",
    "KEEP_CHECKPOINTS", "STACK")}
# under the flip protocol these relabel the same items (ptnl.trainers.stacked.LABEL_ONLY): members' own too
FLIP_MEMBER_OPTS = {"DATASET.NOISE.RATE", "DATASET.NOISE.TYPE"}


def member_opts() -> Set[str]:
    """The trailing options each member of a group may set its own way: the loss, the prompt keys and
    every option of the registered losses (built-in and plugins')."""
    return PROMPT_OPTS | option_keys()


def groupable_trainers(files: Optional[Iterable[str]] = None) -> Set[str]:
    """The registered trainers (``@register_trainer``) whose class sets ``GROUPABLE = True``, or
    inherits it from the nearest base that sets it, read from the classes' source: every module under
    ``ptnl/trainers`` and the plugin files (``files``, default PTNL_PLUGINS's)."""
    return {name for name, says in declared("GROUPABLE", False, files=files).items() if says is True}


def enabled(env=None) -> bool:
    return (env if env is not None else os.environ).get("GROUP", "1") not in ("0", "")


def packing(env=None) -> bool:
    """False with PACK=0: ENGINE=local starts a process for each group (and each run that trains
    alone) instead of training the plan's runs one group after another in one process."""
    return (env if env is not None else os.environ).get("PACK", "1") not in ("0", "")


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
    own = member_opts() | (FLIP_MEMBER_OPTS if pairs.get("DATASET.NOISE.MODE") == "flip"
                         and not pairs.get("DATASET.NOISE.FILE") else set())
    shared_opts = tuple(sorted((k, v) for k, v in pairs.items() if k not in own))
    return tuple(prefix), shared_flags, shared_opts


def packable(argv: List[str]) -> bool:
    """Whether a run can share a process with other runs (``train.py --group`` trains it alone when it
    shares no stream): a plain train.py call that trains (no --eval-only, --no-train, --dry-run,
    --group or --resume) with KEY VALUE pairs."""
    parts = split_argv(argv)
    if parts is None or len(parts[2]) % 2:
        return False
    return not any(parts[1].get(f) for f in ("--eval-only", "--no-train", "--dry-run", "--group", "--resume"))


def pack(runs: List[Dict], units: List[List[int]]) -> List[List[List[int]]]:
    """``units`` (groups and lone runs, in order) in processes: consecutive units whose runs are all
    ``packable`` with the same ``python train.py`` go to one process, which trains them one unit after
    another (one interpreter start, one import of torch and CLIP, images decoded once); the others
    keep a process each."""
    out: List[List[List[int]]] = []
    last = None
    for unit in units:
        prefixes = {tuple(split_argv(runs[i]["argv"])[0]) if packable(runs[i]["argv"]) else None for i in unit}
        prefix = prefixes.pop() if len(prefixes) == 1 else None
        if prefix is not None and prefix == last:
            out[-1].append(unit)
        else:
            out.append([unit])
        last = prefix
    return out


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
