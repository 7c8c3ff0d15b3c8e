"""Stacked members: the runs of a group (``ptnl.trainers.group``) whose prompt learners have the
same shapes over the same frozen CLIP (same trainer class, N_CTX, CSC, position, class names,
precision; they differ in loss, loss options, optimiser or output folder) compute their logits
together: one text-encoder pass over the M x C prompts (each member's common prompt start computed
once, ``TextEncoder(groups=M)``), one image-feature batch, one backward pass of the summed losses.

Why each member still ends where it would alone: its prompts are built by its own prompt learner
from its own parameters, no row of the pass mixes members (position-wise layers act per row,
attention within a prompt and its own member's prefix), and the sum hands each loss a gradient of
exactly 1, so member m's gradient is its lone run's to float rounding; then each member steps its
own optimiser (SGD with momentum and weight decay, its own lr schedule) exactly as alone. Its
trainer object keeps its parameters, optimiser state, checkpoints, logs and results; nothing is
written back. Hooked into the base step's two seams, per trainer object: ``compute_loss`` (the
first member called for a batch computes the stack, the others read their part) and
``model_backward_and_update`` (the first call runs the summed backward, each call its member's
step); precision, diagnostics, divergence checks and the lr schedule stay the base's.
``TRAINER.PTNL.STACK False`` keeps a run out of any stack (``STACK=0`` in the grid scripts).

Under the flip protocol the noise rate and type change only the labels of the same items in the
same order (``label_only_keys``): such runs share a data stream, and each member trains on its own
labels (``own_labels``), stacked or not.
"""
from typing import Dict, List, Sequence, Tuple

import torch

from ptnl.clip.heads import TextClassifier
from ptnl.clip.prompts import PromptCLIP, PromptLearner
from ptnl.clip.text import normalize
from ptnl.io import get_logger
from ptnl.trainers.base import PTNLTrainerBase

log = get_logger(__name__)

_STEP = ("compute_loss", "model_backward_and_update", "forward_backward")
LABEL_ONLY = ("DATASET.NOISE.RATE", "DATASET.NOISE.TYPE")  # ptnl/sweep/group.py names them too


def label_only_keys(flat: Dict) -> Tuple[str, ...]:
    """The keys of a flat config that change only its training items' labels: under the flip
    protocol (no noise file) the noise rate and type relabel the same few-shot items, in the same
    order; otherwise none."""
    if flat.get("DATASET.NOISE.MODE") == "flip" and not flat.get("DATASET.NOISE.FILE"):
        return LABEL_ONLY
    return ()


def own_labels(trainer, batch: Dict) -> Dict:
    """``batch`` with ``trainer``'s own given labels when its group's members train other labels of
    the same images (``prepare_group``); else ``batch`` itself."""
    table = getattr(trainer, "_own_label_of", None)
    if table is None:
        return batch
    return dict(batch, label=torch.tensor([table[p] for p in batch["impath"]], dtype=batch["label"].dtype,
                                          device=batch["label"].device))


def stack_key(trainer):
    """What members of one stack share (None: this run does not stack): its class and every
    setting that shapes or feeds the text pass; the frozen encoders must be the same objects (a
    group loads each CLIP once, ``shared_loads``)."""
    cfg, model = trainer.cfg, getattr(trainer, "model", None)
    if not cfg.TRAINER.PTNL.get("STACK", True) or cfg.TRAINER.PTNL.ANALYSIS or trainer.precision == "amp":
        return None
    if type(model) is not PromptCLIP or type(model.prompt_learner) is not PromptLearner:
        return None
    cls = type(trainer)
    if any(getattr(cls, name) is not getattr(PTNLTrainerBase, name) for name in _STEP):
        return None  # a trainer with its own step, loss or update trains alone in the group
    if type(model).forward is not TextClassifier.forward or type(model).text_features is not PromptCLIP.text_features:
        return None
    learner, enc = model.prompt_learner, model.text_encoder
    trainable = tuple((n, tuple(p.shape), p.dtype) for n, p in learner.named_parameters() if p.requires_grad)
    if not trainable:
        return None
    bias = getattr(model, "logit_bias", None)
    frozen = tuple(map(id, (enc.transformer, model.image_encoder, model.logit_scale, bias)))
    shape = (learner.n_cls, learner.n_ctx, learner.position, learner.ctx.dim(), tuple(learner.name_lens), trainable,
             tuple(learner.token_prefix.shape), tuple(learner.token_suffix.shape))
    return (cls, trainer.precision, str(trainer.device), enc.truncate, enc.share_prefix) + frozen + shape + (
        tuple(learner.tokenized_prompts.reshape(-1).tolist()),)


def stack_partition(trainers: Sequence) -> List[List[int]]:
    """Indices of ``trainers`` in stacks of two or more (in order), by ``stack_key``."""
    stacks: Dict[object, List[int]] = {}
    for i, t in enumerate(trainers):
        key = stack_key(t)
        if key is not None:
            stacks.setdefault(key, []).append(i)
    return [idx for idx in stacks.values() if len(idx) > 1]


def stacked_logits(models: Sequence, images: torch.Tensor) -> List[torch.Tensor]:
    """Logits [B, C] of each of the prompt models ``models`` (same frozen CLIP, same prompt shapes)
    on ``images``, as ``model(images)`` gives them, from one image-encoder call and one text pass
    over all members' prompts."""
    first = models[0]
    learners = [m.prompt_learner for m in models]
    prompts = torch.cat([learner() for learner in learners])
    tokenized = first.prompt_learner.tokenized_prompts.repeat(len(models), 1)
    text = normalize(first.text_encoder(prompts, tokenized, first.prompt_learner.shared_positions(),
                                        groups=len(models)))
    features = first.image_encoder(images.type(first.dtype))
    scaled = first.logit_scale.exp() * normalize(features).type(first.dtype)  # as TextClassifier.classifier
    bias = getattr(first, "logit_bias", None)
    return [scaled @ t.t() if bias is None else scaled @ t.t() + bias for t in text.split(first.prompt_learner.n_cls)]


class Stack:
    """The stacked step of several members' trainers: per batch, one forward (``stacked_logits``)
    and one backward of the summed losses; each member steps its own optimisers."""

    def __init__(self, trainers: Sequence):
        self.trainers = list(trainers)
        self.result, self.pending, self.backward_done = None, set(), False

    def _participants(self, caller):
        """The members training this epoch (a member resumed further sits it out, as in the group)."""
        return [t for t in self.trainers if t.start_epoch <= caller.epoch]

    def compute_loss(self, trainer, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (batch["img"], batch["img"]._version, trainer.epoch, trainer.batch_idx)
        if self.result is None or not (self.result[0][0] is key[0] and self.result[0][1:] == key[1:]):
            members = self._participants(trainer)
            logits = stacked_logits([t.model for t in members], batch["img"])
            losses = {id(t): (t.loss_fn(out, own_labels(t, batch)["label"]), out) for t, out in zip(members, logits)}
            self.result, self.pending, self.backward_done = (key, losses), {id(t) for t in members}, False
        loss, out = self.result[1][id(trainer)]
        return loss, out

    def backward_and_update(self, trainer, loss, names=None):
        """The member's check for a diverged loss, the stack's backward (once per batch), its step."""
        trainer.detect_anomaly(loss)
        if not self.backward_done:
            losses = [value[0] for value in self.result[1].values()]
            for t in self._participants(trainer):
                t.model_zero_grad()
            torch.autograd.backward(losses)  # = backward of their sum: each loss gets a gradient of 1
            self.backward_done = True
        trainer.model_update(names)
        self.pending.discard(id(trainer))
        if not self.pending:
            self.result = None  # every member has its part: free the batch's graph and logits


def install_stacks(trainers: Sequence) -> List[List[int]]:
    """Make the stackable ones among ``trainers`` (a group's members, built and not yet trained)
    train as stacks: their ``compute_loss`` and ``model_backward_and_update`` become the stack's.
    Returns the stacks (indices into ``trainers``); the others are left as they are."""
    stacks = stack_partition(trainers)
    for idx in stacks:
        stack = Stack([trainers[i] for i in idx])
        for t in stack.trainers:
            t.compute_loss = (lambda s, t: lambda batch: s.compute_loss(t, batch))(stack, t)
            t.model_backward_and_update = (lambda s, t: lambda loss, names=None: s.backward_and_update(
                t, loss, names))(stack, t)
        log.info("Stacked {} runs of {} into one text-encoder pass and one backward per batch: {}".format(
            len(idx), type(stack.trainers[0]).__name__, ", ".join(t.cfg.OUTPUT_DIR for t in stack.trainers)))
    return stacks


def prepare_group(trainers: Sequence) -> List[List[int]]:
    """Before a group (built, not yet trained) trains: when its members' labels of the same items
    differ (flip protocol, ``label_only_keys``), every member's step reads its own labels; then the
    stacks (``install_stacks``)."""
    tables = [{d.impath: d.label for d in t.train_items} for t in trainers]
    if any(table != tables[0] for table in tables[1:]):
        for t, table in zip(trainers, tables):
            t._own_label_of = table
            t.forward_backward = (lambda t: lambda batch: type(t).forward_backward(t, own_labels(t, batch)))(t)
    return install_stacks(trainers)
