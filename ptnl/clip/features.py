"""Feature extraction for every evaluation: class text features from templates, image features
(the image encoder's raw output cached per weights digest, dataset, split, transform and the
identity of every image file; L2-normalised on the way out unless asked raw) and zero-shot logits
(cached per image and its file's identity)."""
import torch
from torch.utils.data import DataLoader, Dataset

from ptnl.clip.templates import class_prompts
from ptnl.clip.text import logit_bias, normalize, tokenize
from ptnl.clip.weights import weights_digest
from ptnl.compat import progress, read_image
from ptnl.io import cache


@torch.no_grad()
def text_classifier(clip_model, classnames, templates):
    """[C, D] L2-normalised text features; with several templates, the normalised mean of the
    normalised per-template features (CLIP's prompt ensembling)."""
    if isinstance(templates, str):
        templates = [templates]
    device = clip_model.logit_scale.device
    feats = []
    for template in templates:
        f = clip_model.encode_text(tokenize(class_prompts(template, classnames), clip_model).to(device)).float()
        feats.append(normalize(f))
    w = torch.stack(feats).mean(0)
    return normalize(w)


# On a CPU the encoder runs on at most this many images at once, whatever the loader's batch: a
# ViT-B/32 forward costs 43 ms an image at 32 and 54 at 100 on a 2-core x86 (activations that
# outgrow the caches), and in a whole train.py run the test split's 188 images took 9.4 s against
# 16.0 s. A fixed number, not a machine's measured best, so that features are the same everywhere.
CPU_CHUNK = 32


class _Images(Dataset):
    def __init__(self, paths, transform, reader):
        self.paths, self.transform, self.reader = paths, transform, reader

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(self.reader(self.paths[i]))


def image_loader(paths, transform, device, batch_size=100, num_workers=0) -> DataLoader:
    """The loader of ``image_features``: its own generator; pinned memory when the encoder is on
    CUDA (the copy to the GPU then overlaps decoding the next batch), not on a CPU."""
    return DataLoader(_Images(list(paths), transform, read_image), batch_size=batch_size,
                      num_workers=num_workers, generator=torch.Generator(),
                      pin_memory=torch.device(device).type == "cuda")


@torch.no_grad()
def image_features(encode_image, paths, transform, device, batch_size=100, num_workers=0,
                   desc="image features", *, normalized=True):
    """[N, D] features ``encode_image(batch)`` (in fp32) of the image files ``paths``, L2-normalised
    unless ``normalized`` is False. The loader has its own generator: extracting (or not, on a
    cache hit) never moves the global torch RNG, so training after it is the same either way."""
    loader = image_loader(paths, transform, device, batch_size, num_workers)
    chunk = CPU_CHUNK if torch.device(device).type == "cpu" else batch_size
    out = []
    for x in progress(loader, desc=desc, disable=len(loader) < 2):
        for part in x.split(chunk):
            f = encode_image(part.to(device, non_blocking=loader.pin_memory)).float()
            out.append((normalize(f) if normalized else f).cpu())
    return torch.cat(out)


def encoded_as(device, dtype):
    """The part of a feature-cache key that says how images were encoded: the device type and the
    encoder's dtype. A CUDA fp16 encoder's features differ from a CPU fp32 one's (about 1e-3), so
    runs on either must not read the other's from a shared cache folder."""
    return "{}/{}".format(torch.device(device).type, str(dtype).replace("torch.", ""))


def cached_image_features(encode_image, weights_path, dataset, split, paths, transform, device,
                          batch_size=100, num_workers=0, use_cache=True, dtype=torch.float32, *,
                          raw=False, verify="stat"):
    """``image_features`` of a deterministic view (test transform) of ``paths``, computed once per
    (weights digest, dataset, split, transform, image list with each file's identity under
    ``verify`` (``ptnl.io.cache.files_identity``: size and mtime, or a content hash), device type
    and ``dtype``, the encoder's) and then read from the cache. The cache holds the encoder's raw
    output; ``raw`` returns it as is (CoOp's linear probe), else L2-normalised."""
    desc = "features of the {} split".format(split)
    if not use_cache:
        return image_features(encode_image, paths, transform, device, batch_size, num_workers, desc,
                              normalized=not raw)
    files = cache.files_identity(paths, verify)
    key = cache.cache_key(kind="image_features", features="raw", weights=weights_digest(weights_path),
                          dataset=dataset, split=split, transform=repr(transform),
                          images=cache.identity_digest(files), encoded=encoded_as(device, dtype))
    stored = cache.load(key)
    if stored is None:
        stored = image_features(encode_image, paths, transform, device, batch_size, num_workers, desc,
                                normalized=False)
        cache.save(key, stored, files=files)
    return stored if raw else normalize(stored)


@torch.no_grad()
def zeroshot_logits(clip_model, paths, classnames, templates, transform, dataset, batch_size=100,
                    num_workers=0, *, verify="stat"):
    """[N, C] zero-shot logits (logit_scale x cosine, plus the model's logit bias where it has one) of
    the images ``paths``. Rows are cached
    per image file and its identity under ``verify`` (``ptnl.io.cache.files_identity``) under a
    key of (weights digest, dataset, templates, classnames, transform, device type and dtype):
    images already cached are not recomputed, new or changed ones are (and replace their rows)."""
    key = cache.cache_key(kind="zeroshot_logits", weights=weights_digest(clip_model.weights_path),
                          dataset=dataset, templates=templates, classnames=list(classnames),
                          transform=repr(transform), verify=verify,
                          encoded=encoded_as(clip_model.logit_scale.device, clip_model.dtype))
    wanted = cache.files_identity(dict.fromkeys(paths), verify)
    ident = dict(zip(wanted["paths"], wanted["ids"]))
    stored = cache.load(key) or {"paths": [], "ids": [], "logits": torch.zeros(0, len(classnames))}
    index = {p: i for i, p in enumerate(stored["paths"])}
    missing = [p for p in ident if p not in index or stored["ids"][index[p]] != ident[p]]
    if missing:
        w = text_classifier(clip_model, classnames, templates).cpu()
        feats = image_features(lambda x: clip_model.encode_image(x.type(clip_model.dtype)), missing,
                               transform, clip_model.logit_scale.device, batch_size, num_workers,
                               desc="zero-shot CLIP on {} images".format(len(missing)))
        new = clip_model.logit_scale.exp().float().cpu() * feats @ w.t()
        if logit_bias(clip_model) is not None:
            new = new + logit_bias(clip_model).float().cpu()
        redone = set(missing)
        keep = [i for i, p in enumerate(stored["paths"]) if p not in redone]
        stored = {"paths": [stored["paths"][i] for i in keep] + missing,
                  "ids": [stored["ids"][i] for i in keep] + [ident[p] for p in missing],
                  "logits": torch.cat([stored["logits"][keep], new])}
        cache.save(key, stored, files={"verify": verify, "paths": stored["paths"], "ids": stored["ids"]})
        index = {p: i for i, p in enumerate(stored["paths"])}
    return stored["logits"][[index[p] for p in paths]]
