"""Training data without repeated decoding: the few-shot images are decoded once and kept in
memory (the random augmentations still run on every access, so batches are unchanged). The decoded
images are held for the whole process, keyed on each file's path, size and modification time: the
runs of one process (``train.py --group``, a grid's runs one after another) decode an image once."""
import os
from collections import OrderedDict

from ptnl import compat

_BYTES_PER_PIXEL = 3
# (path, size, mtime in ns) -> decoded RGB image, least recently asked for first; this process only
_HELD: "OrderedDict[tuple, object]" = OrderedDict()


def _size(img) -> int:
    return img.width * img.height * _BYTES_PER_PIXEL


def decode_images(paths, budget_mb):
    """{path: RGB PIL image} for ``paths`` if all of them fit in ``budget_mb`` decoded, else {}.
    Images this process decoded before are reused when the file's size and modification time are
    unchanged (a replaced file is decoded again); what is held beyond ``budget_mb`` (the images of
    earlier runs not asked for now) is let go, least recently asked for first."""
    budget = budget_mb * 2 ** 20
    decoded, fresh, used = {}, {}, 0
    for p in dict.fromkeys(paths):
        st = os.stat(p)
        key = (p, st.st_size, st.st_mtime_ns)
        img = _HELD.get(key)
        if img is None:
            img = fresh[key] = compat.read_image(p)
        else:
            _HELD.move_to_end(key)
        used += _size(img)
        if used > budget:
            return {}  # does not fit: plain reading (nothing of it is held)
        decoded[p] = img
    _HELD.update(fresh)
    held = sum(_size(img) for img in _HELD.values())
    while held > budget:  # this set (at the end, within the budget) stays
        _, img = _HELD.popitem(last=False)
        held -= _size(img)
    return decoded


class DecodedImageWrapper(compat.DatasetWrapper):
    """Dassl's ``DatasetWrapper`` (same batch dicts) reading images from a decoded copy held in
    the main process; DataLoader workers inherit it when they fork."""

    budget_mb = 1024

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        super().__init__(cfg, data_source, transform=transform, is_train=is_train)
        self.decoded = decode_images([d.impath for d in data_source], self.budget_mb)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = self.decoded.get(item.impath) or compat.read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else "img{}".format(i + 1)] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output


def wrapper_for(budget_mb):
    """A ``DecodedImageWrapper`` class with this memory budget, or None (plain reading) for 0."""
    if budget_mb <= 0:
        return None
    return type("DecodedImageWrapper", (DecodedImageWrapper,), {"budget_mb": budget_mb})
