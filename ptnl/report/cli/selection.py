"""The results CLI's runs: every run folder under the given folders, read, sorted into finished,
incomplete and diverged, and filtered by ``--where``."""
import os.path as osp
import sys
from typing import Dict, List, Sequence, Tuple

from ptnl.runs.read import diverged_run, find_runs, incomplete_run, load_run


def matches(record, wheres) -> bool:
    """Whether a run's fields hold every (field, value) of ``wheres`` (numbers compared as numbers:
    ``noise_rate=0.50`` matches 0.5)."""
    for field, value in wheres:
        have = record.get(field)
        if isinstance(have, (int, float)) and not isinstance(have, bool):
            try:
                if float(value) != float(have):
                    return False
                continue
            except ValueError:
                return False
        if str(have) != value:
            return False
    return True


def select_runs(dirs: Sequence[str], wheres: Sequence[Tuple[str, str]]) -> Tuple[List[Dict], List[Dict], int]:
    """(finished records, incomplete or diverged runs, number of run folders found before
    filtering) under ``dirs``, both lists filtered by ``wheres``. A folder that does not exist is
    named on stderr; an unreadable ``results.json`` lists its run as incomplete; a diverged run is
    listed as such, never averaged."""
    for d in dirs:
        if not osp.isdir(d):
            print("not a folder: {}".format(d), file=sys.stderr)
    done, unfinished = find_runs(dirs)
    records, incomplete = [], []
    for d in done:
        try:
            rec = load_run(d)
        except (OSError, ValueError) as e:
            incomplete.append(incomplete_run(d, reason="unreadable: {}".format(e)))
            continue
        if rec.get("diverged"):
            incomplete.append(diverged_run(rec))
        else:
            records.append(rec)
    incomplete += [incomplete_run(d) for d in unfinished]
    if wheres:
        records = [r for r in records if matches(r, wheres)]
        incomplete = [r for r in incomplete if matches(r, wheres)]
    return records, incomplete, len(done) + len(unfinished)
