"""python -m ptnl.export RUN_DIR --out FILE: a tuned prompt as a file plain CLIP can classify with.

The file is ``safetensors`` (tensors and a JSON header; loading it runs no code): the class text
features of the tuned prompt (the zero-shot-style classifier, L2-normalised, [C, D]), the logit
scale (the multiplier, CLIP's ``logit_scale.exp()``), the learned context vectors (``ctx``, and
``name_emb`` where class-name tokens were tuned), and in the header the class names, the backbone
name, its weights file's sha256, the prompt's shape and the run's test accuracy. A CLIP image
feature f (L2-normalised) gets logits ``logit_scale * f @ text_features.T``: the run's classifier.
docs/export.md shows the 20 lines that classify images with ``clip`` and this file.
"""
import argparse
import contextlib
import io
import json
import os.path as osp
import sys
from types import SimpleNamespace
from typing import Dict, NamedTuple, Tuple

import numpy as np
import torch

from ptnl.clip.prompts import PromptCLIP
from ptnl.clip.weights import load_clip, resolve_weights, weights_digest
from ptnl.compat import checkpoint_to_load
from ptnl.errors import ConfigError, MissingFileError, PTNLError
from ptnl.io import atomic_write
from ptnl.runs.files import RESULTS_FILE
from ptnl.runs.identity import IMPLIED_WHEN_ABSENT

FORMAT = "ptnl-prompt/1"
PROMPT_MODEL = "prompt_learner"  # the checkpoint folder of the prompt trainers' trainable part
PROMPT_OPTIONS = ("N_CTX", "CSC", "CTX_INIT", "CTX_INIT_MODE", "CLASS_TOKEN_POSITION")


class TunedPrompt(NamedTuple):
    model: PromptCLIP  # CLIP (frozen, fp32, CPU) with the run's prompt learner and its learned state
    record: Dict  # the run's results.json
    checkpoint: str  # the checkpoint file the learned state came from
    clip_model: torch.nn.Module  # the CLIP model it was built from (its token embedding table: ptnl.interpret)


def read_results(run_dir: str) -> Dict:
    """The ``results.json`` of a finished run; a one-line error otherwise."""
    path = osp.join(run_dir, RESULTS_FILE)
    if not osp.isdir(run_dir):
        raise MissingFileError('Run folder "{}" does not exist'.format(run_dir))
    if not osp.isfile(path):
        raise MissingFileError('No {} in "{}": export needs a finished run'.format(RESULTS_FILE, run_dir))
    try:
        with open(path) as f:
            record = json.load(f)
    except ValueError as e:
        raise MissingFileError('"{}" is not valid JSON ({})'.format(path, e)) from None
    if not isinstance(record.get("config"), dict) or not record.get("classnames"):
        raise MissingFileError('"{}" has no config or class names (written by an older PTNL); rerun the run to '
                          "export it".format(path))
    return record


def prompt_trainer(name: str):
    """The registered trainer class ``name`` if it tunes a CoOp prompt (PTNL and its subclasses)."""
    from ptnl.trainers.prompt_tuning import PTNL
    from ptnl.trainers.registry import TRAINER_CLASSES
    cls = TRAINER_CLASSES.get(name)
    if cls is None or not issubclass(cls, PTNL):
        prompts = [n for n, c in TRAINER_CLASSES.items() if isinstance(c, type) and issubclass(c, PTNL)]
        raise ConfigError("The run's trainer {} tunes no CoOp prompt; export and interpret read runs of {}".format(
            name, ", ".join(prompts)))
    return cls


def read_checkpoint(folder: str) -> Tuple[str, Dict[str, torch.Tensor]]:
    """(path, state dict) of the checkpoint the run's final test used: ``model-best.pth.tar`` where
    the run kept one (TEST.FINAL_MODEL best_val), else the newest ``model.pth.tar-N``. Read with
    ``weights_only=True`` (numpy arrays allowed: the checkpoint's random-generator states)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            path = checkpoint_to_load(folder)
    except FileNotFoundError as e:
        raise MissingFileError(str(e)) from None
    numpy_core = getattr(np, "_core", None) or np.core
    allowed = [np.ndarray, np.dtype, numpy_core.multiarray._reconstruct] + [
        type(np.dtype(t)) for t in ("uint32", "int64", "float64", "uint8", "int32", "float32", "bool")]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling failure is this one message)
        raise MissingFileError('Cannot read checkpoint "{}" with weights_only=True ({})'.format(
            path, str(e).splitlines()[0])) from None
    return path, checkpoint["state_dict"]


def tuned_prompt(run_dir: str) -> TunedPrompt:
    """The run's tuned prompt model, rebuilt as its trainer built it, with the learned state of the
    checkpoint its final test used; fp32 on CPU.

    Args:
        run_dir: a finished run folder of a prompt trainer (PTNL, FullPromptTuning, CLSTuning, UPL, ...).
    """
    record = read_results(run_dir)
    flat = record["config"]
    cls = prompt_trainer(flat.get("TRAINER.NAME", record.get("trainer")))
    opts = SimpleNamespace(**{k: flat.get("TRAINER.PTNL." + k, IMPLIED_WHEN_ABSENT.get("TRAINER.PTNL." + k))
                              for k in PROMPT_OPTIONS})
    clip_model = load_clip(flat["MODEL.BACKBONE.NAME"], device="cpu", prec="fp32")
    learner = cls.make_prompt_learner(opts, record["classnames"], clip_model)
    path, state = read_checkpoint(osp.join(run_dir, PROMPT_MODEL))
    for key in ("token_prefix", "token_suffix"):  # rebuilt from the class names, as when training
        state.pop(key, None)
    learner.load_state_dict(state, strict=False)
    model = PromptCLIP(learner, clip_model).eval()
    model.text_encoder.truncate = flat.get("TRAINER.PTNL.TRUNCATE_TEXT", True)
    model.text_encoder.share_prefix = flat.get("TRAINER.PTNL.SHARE_PREFIX", True)
    return TunedPrompt(model, record, path, clip_model)


@torch.no_grad()
def prompt_tensors(prompt: TunedPrompt) -> Dict[str, torch.Tensor]:
    """The exported tensors: ``text_features`` [C, D] (normalised), ``logit_scale`` (the multiplier),
    ``ctx`` (learned context, [n, D] or [C, n, D]) and ``name_emb`` where class names were tuned."""
    model = prompt.model
    learner = model.prompt_learner
    out = {"text_features": model.text_features().float(),
           "logit_scale": model.logit_scale.exp().float().reshape(())}
    if learner.n_ctx > 0:
        out["ctx"] = learner.ctx.float()
    if learner.learn_names:
        out["name_emb"] = learner.name_emb.float()
    return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}


def prompt_header(prompt: TunedPrompt) -> Dict:
    """The JSON header: what the tensors mean and where they come from."""
    record, flat = prompt.record, prompt.record["config"]
    learner = prompt.model.prompt_learner
    weights = resolve_weights(flat["MODEL.BACKBONE.NAME"])
    return {
        "format": FORMAT,
        "classnames": list(record["classnames"]),
        "backbone": flat["MODEL.BACKBONE.NAME"],
        "weights_file": osp.basename(weights),
        "weights_sha256": weights_digest(weights),
        "trainer": record.get("trainer"), "dataset": record.get("dataset"), "seed": record.get("seed"),
        "test_accuracy": record.get("accuracy"),
        "prompt": {"n_ctx": learner.n_ctx, "csc": learner.ctx.dim() == 3, "position": learner.position,
                   "prompt_texts": list(learner.prompt_texts)},
        "checkpoint": osp.relpath(prompt.checkpoint, osp.dirname(osp.dirname(prompt.checkpoint))),
        "logits": "logit_scale * normalize(clip_image_features) @ text_features.T (logit_scale is the multiplier)",
    }


def export_prompt(run_dir: str, out: str) -> Dict:
    """Write the run's tuned prompt to ``out`` (safetensors); returns the header.

    Args:
        run_dir: a finished run folder of a prompt trainer.
        out: the ``.safetensors`` file to write.
    """
    if not out.endswith(".safetensors"):
        raise ConfigError('--out must name a .safetensors file, got "{}"'.format(out))
    from safetensors.torch import save
    prompt = tuned_prompt(run_dir)
    header = prompt_header(prompt)
    data = save(prompt_tensors(prompt), metadata={"format": FORMAT, "ptnl": json.dumps(header)})
    atomic_write(out, lambda f: f.write(data), mode="wb")
    return header


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptnl.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run of a prompt trainer (holds results.json)")
    p.add_argument("--out", required=True, metavar="FILE", help="the .safetensors file to write")
    a = p.parse_args(argv)
    try:
        header = export_prompt(a.run_dir, a.out)
    except (PTNLError, OSError) as e:
        print("Error: {}".format(e), file=sys.stderr)
        return 2
    print("{}: {} classes, {} context vectors, backbone {} (sha256 {}), run accuracy {}".format(
        a.out, len(header["classnames"]), header["prompt"]["n_ctx"], header["backbone"],
        header["weights_sha256"][:12], header["test_accuracy"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
