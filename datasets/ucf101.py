import os.path as osp
import re

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import DatasetError, PTNLDatasetBase


@DATASET_REGISTRY.register()
class UCF101(PTNLDatasetBase):
    """UCF101 middle frames: 101 actions, ``ucf101/UCF-101-midframes/<Action_Words>/<video>.jpg``.
    Without the split file: ``ucfTrainTestlist/`` split 01 (trainlist carved 80/20 into train /
    val, testlist as test), labels from ``classInd.txt``."""

    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"

    def build_splits(self):
        list_dir = osp.join(self.dataset_dir, "ucfTrainTestlist")
        cname2lab = {}
        for line in self.read_lines(osp.join(list_dir, "classInd.txt")):
            index, action = line.split()
            cname2lab[action] = int(index) - 1
        trainval = self.read_list(cname2lab, osp.join(list_dir, "trainlist01.txt"))
        test = self.read_list(cname2lab, osp.join(list_dir, "testlist01.txt"))
        train, val = self.split_trainval(trainval)
        return train, val, test

    @staticmethod
    def clean_name(action):
        """"ApplyEyeMakeup" -> "Apply_Eye_Makeup", "YoYo" -> "Yo_Yo"."""
        return "_".join(re.findall("[A-Z][^A-Z]*", action))

    def read_list(self, cname2lab, path):
        """Lines ``<Action>/<video>.avi`` (trainlist: then a label, ignored)."""
        records = []
        for line in self.read_lines(path):
            action, filename = line.split()[0].split("/")
            if action not in cname2lab:
                raise DatasetError('"{}" lists action {!r}, which is not in classInd.txt'.format(path, action))
            name = self.clean_name(action)
            records.append((osp.join(self.image_dir, name, filename.replace(".avi", ".jpg")),
                            cname2lab[action], name))
        return self.make_items(records, path)
