"""Zero-shot scores for confusion noise: the run's CLIP and the dataset's template, through the
feature cache, so the dataset step and later runs share one computation."""
import torch

from ptnl.clip.features import zeroshot_logits
from ptnl.clip.preprocess import test_transform
from ptnl.clip.templates import dataset_template
from ptnl.clip.weights import load_clip
from ptnl.io import get_logger

log = get_logger(__name__)


class ConfusionScorer:
    """``scorer(impaths)`` -> zero-shot logits [N, C] with the run's CLIP (MODEL.BACKBONE.NAME) and
    the dataset's template, computed through the cache; CLIP is loaded on first use only."""

    def __init__(self, cfg, classnames):
        self.cfg, self.classnames = cfg, list(classnames)
        self.template = dataset_template(cfg.DATASET.NAME)
        self._model = self._transform = None

    def __call__(self, impaths):
        if self._model is None:
            use_cuda = torch.cuda.is_available() and self.cfg.USE_CUDA
            device = "cuda" if use_cuda else "cpu"
            log.info("Zero-shot CLIP ({}) scores for confusion noise, template {!r}".format(
                self.cfg.MODEL.BACKBONE.NAME, self.template))
            self._model = load_clip(self.cfg.MODEL.BACKBONE.NAME, device=device,
                                    prec="fp16" if use_cuda else "fp32")
            self._transform = test_transform(self.cfg)
        return zeroshot_logits(self._model, impaths, self.classnames, [self.template], self._transform,
                               self.cfg.DATASET.NAME, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
                               num_workers=self.cfg.DATALOADER.NUM_WORKERS,
                               verify=self.cfg.TRAINER.PTNL.CACHE_VERIFY).numpy()
