"""Zero-shot CLIP: class text features from templates, and image logits over a list of images,
cached on disk per (weights digest, dataset, template, transform) and per image."""
import os
import os.path as osp

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ptnl import cache
from ptnl.clip_backbone import file_digest, normalize, tokenize
from ptnl.templates import dataset_template

_DIGESTS = {}


def weights_digest(path):
    """sha256 of a weights file, memoised (in memory and in the cache folder) on its path, size
    and modification time, so a run does not re-read hundreds of MB to name its cache entries."""
    st = os.stat(path)
    memo = (osp.abspath(path), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        key = cache.cache_key(kind="file_digest", path=memo[0], size=memo[1], mtime_ns=memo[2])
        stored = cache.load(key)
        if stored is None:
            stored = {"sha256": file_digest(path)}
            cache.save(key, stored)
        _DIGESTS[memo] = stored["sha256"]
    return _DIGESTS[memo]


@torch.no_grad()
def text_classifier(clip_model, classnames, templates):
    """[C, D] L2-normalised text features; with several templates, the normalised mean of the
    normalised per-template features (CLIP's prompt ensembling)."""
    if isinstance(templates, str):
        templates = [templates]
    device = clip_model.logit_scale.device
    feats = []
    for template in templates:
        texts = [template.format(name.replace("_", " ")) for name in classnames]
        f = clip_model.encode_text(tokenize(texts).to(device)).float()
        feats.append(normalize(f))
    w = torch.stack(feats).mean(0)
    return normalize(w)


class _Images(Dataset):
    def __init__(self, paths, transform, reader):
        self.paths, self.transform, self.reader = paths, transform, reader

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(self.reader(self.paths[i]))


@torch.no_grad()
def image_features(encode_image, paths, transform, device, batch_size=100, num_workers=0,
                   desc="image features"):
    """[N, D] L2-normalised features ``encode_image(batch)`` of the image files ``paths``.
    The loader has its own generator: extracting (or not, on a cache hit) never moves the
    global torch RNG, so training after it is the same either way."""
    from ptnl.compat import read_image
    loader = DataLoader(_Images(list(paths), transform, read_image), batch_size=batch_size,
                        num_workers=num_workers, generator=torch.Generator())
    out = []
    for x in tqdm(loader, desc=desc, disable=len(loader) < 2):
        f = encode_image(x.to(device)).float()
        out.append(normalize(f).cpu())
    return torch.cat(out)


def cached_image_features(encode_image, weights_path, dataset, split, paths, transform, device,
                          batch_size=100, num_workers=0, use_cache=True):
    """``image_features`` of a deterministic view (test transform) of ``paths``, computed once per
    (weights digest, dataset, split, transform, image list) and then read from the cache."""
    if not use_cache:
        return image_features(encode_image, paths, transform, device, batch_size, num_workers,
                              desc="features of the {} split".format(split))
    digest = cache.cache_key(paths=list(paths))
    key = cache.cache_key(kind="image_features", weights=weights_digest(weights_path), dataset=dataset,
                          split=split, transform=repr(transform), images=digest)
    stored = cache.load(key)
    if stored is None:
        stored = image_features(encode_image, paths, transform, device, batch_size, num_workers,
                                desc="features of the {} split".format(split))
        cache.save(key, stored)
    return stored


@torch.no_grad()
def zeroshot_logits(clip_model, paths, classnames, templates, transform, dataset, batch_size=100,
                    num_workers=0):
    """[N, C] zero-shot logits (logit_scale x cosine) of the images ``paths``. Rows are cached
    per image under a key of (weights digest, dataset, templates, classnames, transform): images
    already cached are not recomputed, new ones are added."""
    key = cache.cache_key(kind="zeroshot_logits", weights=weights_digest(clip_model.weights_path),
                          dataset=dataset, templates=templates, classnames=list(classnames),
                          transform=repr(transform))
    stored = cache.load(key) or {"paths": [], "logits": torch.zeros(0, len(classnames))}
    index = {p: i for i, p in enumerate(stored["paths"])}
    missing = [p for p in dict.fromkeys(paths) if p not in index]
    if missing:
        w = text_classifier(clip_model, classnames, templates).cpu()
        feats = image_features(lambda x: clip_model.encode_image(x.type(clip_model.dtype)), missing,
                               transform, clip_model.logit_scale.device, batch_size, num_workers,
                               desc="zero-shot CLIP on {} images".format(len(missing)))
        new = clip_model.logit_scale.exp().float().cpu() * feats @ w.t()
        stored = {"paths": stored["paths"] + missing, "logits": torch.cat([stored["logits"], new])}
        cache.save(key, stored)
        index = {p: i for i, p in enumerate(stored["paths"])}
    return stored["logits"][[index[p] for p in paths]]


class ConfusionScorer:
    """``scorer(impaths)`` -> zero-shot logits [N, C] with the run's CLIP (MODEL.BACKBONE.NAME) and
    the dataset's template, computed through the cache; CLIP is loaded on first use only."""

    def __init__(self, cfg, classnames):
        self.cfg, self.classnames = cfg, list(classnames)
        self.template = dataset_template(cfg.DATASET.NAME)
        self._model = self._transform = None

    def __call__(self, impaths):
        from ptnl import compat
        from ptnl.clip_backbone import load_clip
        if self._model is None:
            use_cuda = torch.cuda.is_available() and self.cfg.USE_CUDA
            device = "cuda" if use_cuda else "cpu"
            print("Zero-shot CLIP ({}) scores for confusion noise, template {!r}".format(
                self.cfg.MODEL.BACKBONE.NAME, self.template))
            self._model = load_clip(self.cfg.MODEL.BACKBONE.NAME, device=device,
                                    prec="fp16" if use_cuda else "fp32")
            self._transform = compat.build_transform(self.cfg, is_train=False)
        return zeroshot_logits(self._model, impaths, self.classnames, [self.template], self._transform,
                               self.cfg.DATASET.NAME, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
                               num_workers=self.cfg.DATALOADER.NUM_WORKERS).numpy()
