"""CoOp-style logs of a run folder (Dassl's ``log.txt`` and the ``log.txt-<time>`` of resumed
sessions): the end-of-training line, the last ``* accuracy: X%`` after it (the regex of CoOp's
parse_test_res.py), the last epoch and the printed config."""
import os
import os.path as osp
import re

from ptnl.runs.layout import literal

END_LINES = ("Finish training", "Finished training")  # Dassl >= 0.6.1, older Dassl
ACCURACY_RE = re.compile(r"\* accuracy: ([\.\deE+-]+)%")  # the regex of CoOp's parse_test_res.py
EPOCH_RE = re.compile(r"epoch \[(\d+)/(\d+)\]")
LOG_RE = re.compile(r"^log\.txt(-.+)?$")  # Dassl writes log.txt-<time> when log.txt exists (a resume)
# How train.py ends a failed or interrupted session in its log
STOP_RE = re.compile(r"^(?:Error: (?P<error>.*)|Interrupted at epoch (?P<epoch>\d+)(?:/\d+)?\b.*)$")


def log_files(run_dir):
    """log.txt, then the logs of resumed sessions (log.txt-YYYY-MM-DD-HH-MM-SS) in time order."""
    names = [n for n in os.listdir(run_dir) if LOG_RE.match(n) and osp.isfile(osp.join(run_dir, n))]
    return [osp.join(run_dir, n) for n in sorted(names, key=lambda n: (n != "log.txt", n))]


def config_dump(lines):
    """The config tree a CoOp/PTNL train.py prints after '** Config **', as {"DATASET.NAME": value}."""
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "** Config **")
    except StopIteration:
        return {}
    out, path = {}, []
    for ln in lines[start + 1:]:
        ln = ln.rstrip("\n")
        if not path and set(ln.strip()) <= {"*"}:
            continue
        m = re.match(r"^( *)([A-Za-z0-9_]+):(?: (.*))?$", ln)
        if not m:
            break
        depth = len(m.group(1)) // 2
        path = path[:depth] + [m.group(2)]
        if m.group(3) is not None:
            out[".".join(path)] = literal(m.group(3).strip())
    return out


def parse_log(run_dir):
    """What the CoOp-style logs of a run folder say: the end-of-training line (either Dassl's
    wording), the last ``* accuracy: X%`` after it, the last epoch logged, the printed config, and
    how the newest session stopped (``stopped``: its last ``Error: ...`` or ``Interrupted at epoch
    E/N`` line, as ("error", message) or ("interrupted", E))."""
    info = {"finished": False, "end_line": None, "accuracy": None, "log": None, "last_epoch": None, "config": {},
            "logs": log_files(run_dir), "stopped": None}
    for path in info["logs"]:
        with open(path, errors="replace") as f:
            lines = f.readlines()
        info["config"] = info["config"] or config_dump(lines)
        for ln in lines:
            m = EPOCH_RE.search(ln)
            if m:
                info["last_epoch"] = (int(m.group(1)), int(m.group(2)))
        stops = [m for ln in lines for m in [STOP_RE.match(ln.strip())] if m]
        # the newest session's last Error:/Interrupted line: ("error", message) or ("interrupted", epoch)
        info["stopped"] = None if not stops else ("error", stops[-1].group("error")) \
            if stops[-1].group("error") is not None else ("interrupted", int(stops[-1].group("epoch")))
        ends = [i for i, ln in enumerate(lines) if ln.strip() in END_LINES]
        if ends:
            accs = [m.group(1) for ln in lines[ends[-1] + 1:] for m in [ACCURACY_RE.search(ln)] if m]
            info.update(finished=True, end_line=lines[ends[-1]].strip(), log=path,
                        accuracy=float(accs[-1]) if accs else None)
    return info
