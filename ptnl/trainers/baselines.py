"""Baselines outside CLIP prompt learning: LinearProbe (logistic regression on frozen CLIP image
features, the paper's Fig. 1) and ImageNetFT (a torchvision ImageNet-pretrained ResNet fully
fine-tuned)."""
import numpy as np
import torch
import torch.nn as nn

from ptnl.clip.heads import ImageClassifier, LinearHead
from ptnl.clip.weights import BackboneError, WeightsNotFoundError, downloads_off
from ptnl.io import get_logger
from ptnl.trainers.base import PTNLTrainerBase
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)

SEARCH_GRID = [10.0 ** k for k in range(-2, 5)]


def fit_logistic_regression(x, y, c, max_iter=1000):
    """sklearn's L2 logistic regression (lbfgs, multinomial) with inverse strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit(x, y)
    return clf


@register_trainer
class LinearProbe(PTNLTrainerBase):
    """Logistic regression on L2-normalised CLIP image features of the (noisy) few-shot set,
    un-augmented (the test transform). TRAINER.LINEAR_PROBE.C, or chosen on the val split."""

    TRAINS = False

    def build_model(self):
        clip_model = self.load_clip_model()
        num_classes = self.dm.num_classes
        dim = clip_model.text_projection.shape[1]
        self.model = ImageClassifier(clip_model, LinearHead(torch.zeros(num_classes, dim), 1.0))
        self.freeze_all_but(self.model, [])  # fitted by sklearn, not by gradients
        self.model.to(self.device).eval()
        self.build_loss()

    def fit(self):
        opts = self.cfg.TRAINER.LINEAR_PROBE
        train = self.train_items
        x = self.cached_features("train", train).numpy()
        y = np.array([d.label for d in train])
        c = opts.C
        if opts.SEARCH_C and self.dm.dataset.val:
            xv = self.cached_features("val", self.dm.dataset.val).numpy()
            yv = np.array([d.label for d in self.dm.dataset.val])
            scores = {cc: (fit_logistic_regression(x, y, cc, opts.MAX_ITER).predict(xv) == yv).mean()
                      for cc in SEARCH_GRID}
            c = max(SEARCH_GRID, key=lambda cc: (scores[cc], -abs(np.log10(cc) - np.log10(opts.C))))
            log.info("Linear probe: val accuracy by C: {}".format(
                ", ".join("{:g}: {:.1f}%".format(cc, 100 * v) for cc, v in scores.items())))
        log.info("Linear probe: logistic regression with C = {:g} on {} samples".format(c, len(y)))
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
        return record


@register_trainer
class ImageNetFT(PTNLTrainerBase):
    """A torchvision ResNet with ImageNet weights, every layer fine-tuned, new final layer.
    MODEL.BACKBONE.NAME: a torchvision architecture name (its IMAGENET1K_V1 weights, downloaded
    into torch's hub cache) or a weights file for TRAINER.IMAGENET_FT.ARCH."""

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
