"""What the four ImageNet test sets (ImageNet-V2, -Sketch, -A, -R: CoOp's domain-generalisation targets)
share: one folder of images per class and ImageNet's ``classnames.txt`` copied next to it; the whole
list is both ``train_x`` and ``test`` (they are evaluated, never trained on: no few-shot sampling)."""
import os
import os.path as osp

from ptnl.data.base import DatasetError, PTNLDatasetBase
from ptnl.io import get_logger

from .imagenet import ImageNet

log = get_logger(__name__)


class ImageNetTestSet(PTNLDatasetBase):
    """A test-only ImageNet variant: ``<dataset_dir>/<image_dir>/<class folder>/<images>`` and
    ``<dataset_dir>/classnames.txt`` (``<wnid> <name>`` per line, ImageNet's). Subclasses say how
    class folders map to labels (``class_folders``)."""

    split_file = ""  # none: the folders are the list
    fewshot_val = False

    def expected_contents(self):
        return '"classnames.txt" (ImageNet\'s) and the class folders "{}/<class>/"'.format(type(self).image_dir)

    def class_folders(self, classnames):
        """[(folder name, label, class name)]: by default the sorted wnid folders present, labelled
        by rank (how CoOp's readers give ImageNet-Sketch its 1000 classes and ImageNet-A/R their 200)."""
        folders = sorted(e.name for e in os.scandir(self.image_dir)
                         if e.is_dir() and not e.name.startswith("."))  # files (README.txt) are no class
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise DatasetError('{} folders of "{}" are not wnids of "{}", e.g. "{}"'.format(
                len(unknown), self.image_dir, osp.join(self.dataset_dir, "classnames.txt"), unknown[0]))
        return [(f, label, classnames[f]) for label, f in enumerate(folders)]

    def build_splits(self):
        if not osp.isdir(self.image_dir):
            raise DatasetError('image folder "{}" not found'.format(self.image_dir))
        classnames = ImageNet.read_classnames(self, osp.join(self.dataset_dir, "classnames.txt"))
        records = []
        classes = self.class_folders(classnames)
        for folder, label, name in classes:
            class_dir = osp.join(self.image_dir, folder)
            if not osp.isdir(class_dir):
                raise DatasetError('class folder "{}" (label {}, {}) not found'.format(class_dir, label, name))
            records += [(path, label, name) for path in ImageNet.class_images(class_dir, label, name)]
        log.info("{}: {} images of {} classes".format(type(self).__name__, len(records), len(classes)))
        data = self.make_items(records, self.image_dir)
        return data, None, data

    def load_or_sample_fewshot(self, train, val, num_shots, seed):
        """A test set is never sampled (nor cached): DATASET.NUM_SHOTS of the trained run does not apply."""
        return train, val
