"""python -m ptnl.interpret RUN_DIR [--top K]: the words nearest each learned context vector.

CoOp's reading of a tuned prompt: for every context vector, the K vocabulary tokens whose input
embeddings (CLIP's token embedding table) are nearest in Euclidean distance, with the distances.
Learned vectors usually lie far from every word, so the words are a hint, not a translation
(CoOp, section 4.4). Printed, and saved as JSON (``interpretation.json`` in the run folder, or
``--out``). A class-specific context (CSC) is read class by class.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Sequence

import torch

from ptnl.errors import ConfigError, PTNLError
from ptnl.export import tuned_prompt
from ptnl.io import write_json_atomic

INTERPRETATION_FILE = "interpretation.json"


@torch.no_grad()
def nearest_tokens(ctx: torch.Tensor, table: torch.Tensor, k: int):
    """(distances, token ids), each [..., n, k]: the ``k`` rows of ``table`` [V, D] nearest (Euclidean)
    each context vector of ``ctx`` ([n, D], or [C, n, D] class-specific), nearest first."""
    if not 1 <= k <= table.shape[0]:
        raise ConfigError("--top must be between 1 and the vocabulary size {}, got {}".format(table.shape[0], k))
    flat = ctx.reshape(-1, ctx.shape[-1]).float()
    dist = torch.cdist(flat, table.float())
    values, ids = dist.topk(k, dim=1, largest=False)
    shape = tuple(ctx.shape[:-1]) + (k,)
    return values.reshape(shape), ids.reshape(shape)


def token_words(ids: Sequence[int]) -> List[str]:
    """The text of each CLIP BPE token (its bytes decoded, the word-end marker dropped)."""
    from clip.simple_tokenizer import SimpleTokenizer
    tokenizer = SimpleTokenizer()
    return [tokenizer.decode([int(i)]).strip() if int(i) in tokenizer.decoder else "<{}>".format(int(i))
            for i in ids]


def _vectors(dist: torch.Tensor, ids: torch.Tensor) -> List[List[Dict]]:
    """[n, k] distances and ids -> per context vector, its k {"token", "id", "distance"} records."""
    words = token_words(ids.reshape(-1).tolist())
    k = ids.shape[-1]
    return [[{"token": words[i * k + j], "id": int(ids[i, j]), "distance": round(float(dist[i, j]), 4)}
             for j in range(k)] for i in range(ids.shape[0])]


def interpret_run(run_dir: str, k: int = 5) -> Dict:
    """The nearest tokens of the run's learned context: ``{"context": [[k records] per vector]}`` for a
    shared context, ``{"classes": {name: [[k records] per vector]}}`` for a class-specific one."""
    prompt = tuned_prompt(run_dir)
    learner = prompt.model.prompt_learner
    if learner.n_ctx == 0 or not learner.ctx.requires_grad:
        raise ConfigError('Run "{}" learned no context vectors (N_CTX 0, or a fixed template as CLSTuning\'s)'.format(
            run_dir))
    table = prompt.clip_model.token_embedding.weight
    dist, ids = nearest_tokens(learner.ctx, table, k)
    out = {"run": osp.abspath(run_dir), "backbone": prompt.record["config"]["MODEL.BACKBONE.NAME"],
           "top": k, "distance": "euclidean, to CLIP's token embedding table", "n_ctx": learner.n_ctx}
    if learner.ctx.dim() == 3:
        out["classes"] = {name: _vectors(dist[c], ids[c]) for c, name in enumerate(prompt.record["classnames"])}
    else:
        out["context"] = _vectors(dist, ids)
    return out


def format_interpretation(result: Dict) -> str:
    """One line per context vector: ``ctx i: word (distance), ...``; a block per class under CSC."""
    def block(vectors):
        return ["  ctx {:>2}: {}".format(i + 1, ", ".join("{} ({:.4f})".format(t["token"], t["distance"]) for t in v))
                for i, v in enumerate(vectors)]
    lines = ["Nearest {} tokens of each context vector ({}):".format(result["top"], result["distance"])]
    if "context" in result:
        lines += block(result["context"])
    else:
        for name, vectors in result["classes"].items():
            lines += ["{}:".format(name)] + block(vectors)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptnl.interpret", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run of a prompt trainer (holds results.json)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="tokens per context vector (default 5)")
    p.add_argument("--out", metavar="FILE", help="the JSON file to write (default: RUN_DIR/{})".format(
        INTERPRETATION_FILE))
    a = p.parse_args(argv)
    try:
        result = interpret_run(a.run_dir, a.top)
        out = a.out or osp.join(a.run_dir, INTERPRETATION_FILE)
        write_json_atomic(out, result)
    except (PTNLError, OSError) as e:
        print("Error: {}".format(e), file=sys.stderr)
        return 2
    print(format_interpretation(result))
    print("Saved {}".format(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
