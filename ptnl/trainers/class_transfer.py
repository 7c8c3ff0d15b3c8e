"""Evaluating a trained model on other classes than it trained on (base-to-new, cross-dataset transfer):
sound only when its trained state holds nothing per class. A class-specific state (a linear head's
rows, CoOp's class-specific context, learned class-name tokens) loaded onto another class list of the
same size would score class i with what was learned for the trained class i, without any error."""
import json
import os.path as osp
from typing import List, Optional, Sequence

from ptnl.runs.files import RESULTS_FILE


def trained_classnames(model_dir: str) -> Optional[List[str]]:
    """The class names the finished run in ``model_dir`` trained on (``results.json`` ``classnames``),
    in label order; None when it recorded none (an unfinished run, one made by CoOp)."""
    path = osp.join(model_dir, RESULTS_FILE)
    try:
        with open(path) as f:
            names = json.load(f).get("classnames")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def class_transfer_problem(trained: Optional[Sequence[str]], current: Sequence[str], class_specific: str,
                           model_dir: str) -> str:
    """Why the model of ``model_dir``, trained on the classes ``trained``, cannot be evaluated on
    ``current`` ("" when it can): its trained state is per class (``class_specific`` names that part;
    "" when there is none) and the class lists differ (other names, or the same names in another
    order). Unknown trained classes (None) are not refused."""
    current = [str(n) for n in current]
    if not class_specific or trained is None or list(trained) == current:
        return ""
    if len(trained) == len(current) and set(trained) == set(current):
        how = "the same {} classes in another order".format(len(current))
    else:
        other = [n for n in current if n not in set(trained)]
        how = "{} classes, {} of them not trained on (e.g. {!r})".format(len(current), len(other), other[0]) \
            if other else "{} of its {} classes".format(len(current), len(trained))
    return ("--eval-only: the model in {} was trained on {} classes (first {!r}) and this run has {}; what it "
            "learned per class ({}) cannot score other classes (base-to-new and cross-dataset transfer need a "
            "class-agnostic prompt: e.g. TRAINER.PTNL.CSC False, CoCoOp, KgCoOp, MaPLe, PromptSRC)".format(
                model_dir, len(trained), trained[0] if trained else None, how, class_specific))
