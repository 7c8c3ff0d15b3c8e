"""Zero-shot evaluation on the pocket dataset, for building and checking the world: its test
transform, a split's images and labels, image features and zero-shot accuracy."""
import json
import os.path as osp

from ptnl.pocket.records import TEMPLATE

def test_transform(resolution=None):
    """The trainers' test transform (resize the short side, centre crop, CLIP's normalisation)."""
    import torchvision.transforms as T
    from ptnl.pocket.pretrain import MEAN, RESOLUTION, STD
    r = resolution or RESOLUTION
    return T.Compose([T.Resize(r, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(r), T.ToTensor(),
                      T.Normalize(MEAN, STD)])


def read_split(root, split="test"):
    """(image paths, labels, class names) of a split of the pocket dataset under ``root``."""
    ddir = osp.join(root, "dtd")
    with open(osp.join(ddir, "split_zhou_DescribableTextures.json")) as f:
        items = json.load(f)[split]
    names = {}
    for _, label, name in items:
        names[int(label)] = name
    return ([osp.join(ddir, "images", p) for p, _, _ in items], [int(y) for _, y, _ in items],
            [names[k] for k in sorted(names)])


def image_features(model, paths, batch_size=200):
    """L2-normalised image features [N, D] of ``paths`` under the test transform."""
    from ptnl.clip.features import image_features as encoded
    return encoded(lambda x: model.encode_image(x.type(model.dtype)), paths,
                   test_transform(model.visual.input_resolution), model.logit_scale.device, batch_size)


def zero_shot_accuracy(model, root, template=TEMPLATE, split="test", classnames=None):
    """Zero-shot accuracy (a fraction) of ``model`` on a split of the pocket dataset, with the
    class prompts ``template.format(name)``; ``classnames`` overrides the prompts' names (label k
    is scored against ``classnames[k]``)."""
    import torch
    from ptnl.clip.features import text_classifier
    paths, labels, names = read_split(root, split)
    text = text_classifier(model, classnames or names, [template])
    pred = (image_features(model, paths) @ text.t()).argmax(dim=1)
    return float((pred == torch.tensor(labels)).float().mean())
