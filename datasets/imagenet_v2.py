from ptnl.compat import DATASET_REGISTRY

from .imagenet_variants import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetTestSet):
    """ImageNetV2 matched-frequency (test only): ``imagenetv2/imagenetv2-matched-frequency-format-val/``
    with folders ``0`` ... ``999`` named by label, and ImageNet's ``classnames.txt``, whose k-th line
    (file order, i.e. sorted wnids) names label k."""

    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"

    def expected_contents(self):
        return '"classnames.txt" (ImageNet\'s 1000 lines) and "{}/<0..999>/"'.format(type(self).image_dir)

    def class_folders(self, classnames):
        return [(str(label), label, classnames[wnid]) for label, wnid in enumerate(classnames)]
