"""Baselines outside CLIP prompt learning: LinearProbe (logistic regression on frozen CLIP image
features, the paper's Fig. 1) and ImageNetFT (a torchvision ImageNet-pretrained ResNet fully
fine-tuned)."""
import numpy as np
import torch
import torch.nn as nn

from ptnl.clip.heads import ImageClassifier, LinearHead
from ptnl.clip.text import embed_dim
from ptnl.clip.weights import BackboneError, WeightsNotFoundError, downloads_off
from ptnl.errors import ConfigError
from ptnl.io import get_logger
from ptnl.noise import flip_noise
from ptnl.trainers.base import CheckpointFileError, PTNLTrainerBase
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)

SEARCH_GRID = [10.0 ** k for k in range(-2, 5)]  # PROTOCOL fixed, SEARCH_C True
COOP_GRID = [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]  # CoOp's lpclip: first pass, then a binary search
COOP_STEPS = 8
PROTOCOLS = ("coop", "fixed")


def fit_logistic_regression(x, y, c, max_iter=1000):
    """sklearn's L2 logistic regression (lbfgs, multinomial) with inverse strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit(x, y)
    return clf


def val_accuracy(x, y, xv, yv, c, max_iter=1000):
    """Accuracy on (xv, yv) of the logistic regression fitted on (x, y) with C = ``c``."""
    return float((fit_logistic_regression(x, y, c, max_iter).predict(xv) == yv).mean())


def coop_search_c(x, y, xv, yv, max_iter=1000, steps=COOP_STEPS):
    """CoOp's lpclip search of C on a validation set: the best of 1e6 ... 1e-6 (first on ties),
    then ``steps`` rounds comparing the two ends of [peak/10, peak*10] and halving the range, in
    log10, towards the better end (the left one on ties); the C of the last round is kept.
    Returns (C, [(C, val accuracy), ...] in the order tried)."""
    tried = [(c, val_accuracy(x, y, xv, yv, c, max_iter)) for c in COOP_GRID]
    peak = COOP_GRID[int(np.argmax([a for _, a in tried]))]
    left, right = 0.1 * peak, 10.0 * peak
    final = peak
    for _ in range(steps):
        acc_left, acc_right = val_accuracy(x, y, xv, yv, left, max_iter), val_accuracy(x, y, xv, yv, right, max_iter)
        tried += [(left, acc_left), (right, acc_right)]
        mid = 0.5 * (np.log10(left) + np.log10(right))
        if acc_left < acc_right:
            final, left, right = right, 10.0 ** mid, right
        else:
            final, left, right = left, left, 10.0 ** mid
    return final, tried


@register_trainer
class LinearProbe(PTNLTrainerBase):
    """Logistic regression on frozen CLIP image features of the (noisy) few-shot set, un-augmented
    (the test transform). TRAINER.LINEAR_PROBE.PROTOCOL ``coop`` (CoOp's lpclip, the paper's
    Fig. 1 probe): raw features, C searched on the few-shot val split (``coop_search_c``);
    ``fixed``: L2-normalised features, C = TRAINER.LINEAR_PROBE.C (or SEARCH_C's coarse grid).
    TRAINER.LINEAR_PROBE.VAL_NOISE gives the val split the run's label noise."""

    COLOUR = "#000000"
    USES_LOSS = False  # logistic regression
    TRAINS = False

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        if cfg.TRAINER.LINEAR_PROBE.PROTOCOL not in PROTOCOLS:
            raise ConfigError("TRAINER.LINEAR_PROBE.PROTOCOL must be one of {}, got {!r}".format(
                PROTOCOLS, cfg.TRAINER.LINEAR_PROBE.PROTOCOL))

    def build_model(self):
        clip_model = self.load_clip_model()
        num_classes = self.dm.num_classes
        dim = embed_dim(clip_model)
        self.model = ImageClassifier(clip_model, LinearHead(torch.zeros(num_classes, dim), 1.0,
                                                            normalize=not self.raw_features))
        self.freeze_all_but(self.model, [])  # fitted by sklearn, not by gradients
        self.model.to(self.device).eval()
        self.build_loss()

    def load_model(self, directory, epoch=None):
        """Refused for a trained run's folder: the probe keeps no checkpoint (its classifier is fitted in
        seconds, then tested), so an evaluation would score the untrained all-zero classifier."""
        if directory:
            raise CheckpointFileError("--eval-only: LinearProbe keeps no checkpoint in {} (its classifier is fitted, "
                                      "then tested, in one run): run it without --eval-only on the data to evaluate "
                                      "instead".format(directory))

    @property
    def raw_features(self):
        """``coop``: the image encoder's raw output, as lpclip fits and tests on (the evaluation
        from cached features reads them raw too); ``fixed``: L2-normalised."""
        return self.cfg.TRAINER.LINEAR_PROBE.PROTOCOL == "coop"

    def features(self, split, items):
        """Cached image features of ``items`` as the protocol fits on them (``raw_features``: the
        encoder's output, or L2-normalised)."""
        return self.cached_features(split, items).float().numpy()

    def val_labels(self, val):
        """The val split's labels: clean (CoOp's), or with the run's noise rate and type drawn by
        the flip protocol on a stream of its own (VAL_NOISE)."""
        labels = np.array([d.label for d in val])
        noise = self.cfg.DATASET.NOISE
        if not self.cfg.TRAINER.LINEAR_PROBE.VAL_NOISE or noise.RATE == 0:
            return labels
        out = flip_noise(labels, noise.RATE, self.dm.num_classes, self.cfg.SEED, noise.TYPE,
                         key=self.cfg.DATASET.NAME + "/val")
        self.val_noisy = int(out["noisy"].sum())
        log.info("Linear probe: {} of {} val labels noisy (VAL_NOISE)".format(self.val_noisy, len(labels)))
        return out["given"]

    def fit(self):
        opts = self.cfg.TRAINER.LINEAR_PROBE
        train, val = self.train_items, self.dm.dataset.val
        x = self.features("train", train)
        y = np.array([d.label for d in train])
        c, self.c_search, self.val_noisy = opts.C, None, 0
        search = opts.PROTOCOL == "coop" or opts.SEARCH_C
        if search and not val:
            log.info("Linear probe: no val split to search C on; C = {:g}".format(c))
        elif search:
            xv, yv = self.features("val", val), self.val_labels(val)
            if opts.PROTOCOL == "coop":
                c, tried = coop_search_c(x, y, xv, yv, opts.MAX_ITER)
            else:
                tried = [(cc, val_accuracy(x, y, xv, yv, cc, opts.MAX_ITER)) for cc in SEARCH_GRID]
                scores = dict(tried)
                c = max(SEARCH_GRID, key=lambda cc: (scores[cc], -abs(np.log10(cc) - np.log10(opts.C))))
            self.c_search = [[cc, 100 * a] for cc, a in tried]
            log.info("Linear probe: val accuracy by C: {}".format(
                ", ".join("{:.4g}: {:.1f}%".format(cc, 100 * a) for cc, a in tried)))
        log.info("Linear probe ({}): logistic regression with C = {:.6g} on {} samples".format(
            opts.PROTOCOL, c, len(y)))
        clf = fit_logistic_regression(x, y, c, opts.MAX_ITER)
        weight = torch.zeros(self.dm.num_classes, x.shape[1])
        bias = torch.full((self.dm.num_classes,), -1e4)  # classes absent from training never win
        weight[clf.classes_] = torch.from_numpy(clf.coef_).float()
        bias[clf.classes_] = torch.from_numpy(clf.intercept_).float()
        with torch.no_grad():
            self.model.head.weight.copy_(weight.to(self.device))
            self.model.head.bias.copy_(bias.to(self.device))
        self.chosen_c = c

    def results_record(self):
        record = super().results_record()
        record["linear_probe_C"] = self.chosen_c
        record["linear_probe"] = {"protocol": self.cfg.TRAINER.LINEAR_PROBE.PROTOCOL, "C": self.chosen_c,
                                  "search": self.c_search, "val_noisy": self.val_noisy}
        return record


@register_trainer
class ImageNetFT(PTNLTrainerBase):
    """A torchvision ResNet with ImageNet weights, every layer fine-tuned, new final layer.
    MODEL.BACKBONE.NAME: a torchvision architecture name (its IMAGENET1K_V1 weights, downloaded
    into torch's hub cache) or a weights file for TRAINER.IMAGENET_FT.ARCH."""

    COLOUR = "#F0E442"
    USES_CLIP = False  # its input is the config's (ImageNet preprocessing), its size not a CLIP's

    def build_model(self):
        self.model = build_imagenet_resnet(self.cfg.MODEL.BACKBONE.NAME, self.cfg.TRAINER.IMAGENET_FT.ARCH,
                                           self.dm.num_classes)
        self.model.to(self.device)
        self.register_trainable("model", self.model)


def build_imagenet_resnet(name_or_path, arch, num_classes):
    import os.path as osp

    import torchvision
    archs = [a for a in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")]
    if osp.isfile(osp.expanduser(name_or_path)):
        if arch not in archs:
            raise BackboneError("TRAINER.IMAGENET_FT.ARCH must be one of {}, got {!r}".format(archs, arch))
        model = getattr(torchvision.models, arch)()
        state = torch.load(osp.expanduser(name_or_path), map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        log.info("Loaded ImageNet weights for {} from {}".format(arch, name_or_path))
    elif name_or_path in archs:
        weights = torchvision.models.get_model_weights(name_or_path).IMAGENET1K_V1
        target = osp.join(torch.hub.get_dir(), "checkpoints", osp.basename(weights.url))
        if not osp.isfile(target) and downloads_off():
            raise WeightsNotFoundError('ImageNet weights of {} not found at "{}" and downloads are off '
                                       "(PTNL_OFFLINE). Download {} there, or pass a weights file as "
                                       "MODEL.BACKBONE.NAME.".format(name_or_path, target, weights.url))
        try:
            model = getattr(torchvision.models, name_or_path)(weights=weights)
        except Exception as e:
            raise WeightsNotFoundError('ImageNet weights of {} could not be loaded or downloaded to "{}" ({}). '
                                       "Download {} there.".format(name_or_path, target, e, weights.url)) from e
    else:
        raise BackboneError("Unknown backbone {!r} for ImageNetFT (MODEL.BACKBONE.NAME): expected one of {} "
                            "or a weights file".format(name_or_path, ", ".join(archs)))
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
