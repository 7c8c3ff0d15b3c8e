"""Noisy-set files: a run's training set as a plain table (CSV or JSON) that another codebase can
train on, and the reader that makes ``DATASET.NOISE.FILE`` train on exactly such a table.

A file has a header (dataset, class list, shots, seed, protocol, type, rate, realised rate, the
split file's sha256) and one row per training item, in training order: ``impath`` (relative to
DATASET.ROOT, "/"-separated), ``classname`` and ``true_label`` (the image's class) and one or more
given-label columns (``label``; CIFAR-N-style files hold several annotators' columns, chosen with
``DATASET.NOISE.FILE_COLUMN``). Labels index the header's ``classes``.

CSV: header lines ``# key: <JSON value>`` above the column row. JSON: ``{"header": {...},
"samples": [{column: value, ...}, ...]}``.
"""
import csv
import io
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from ptnl.io import atomic_write, get_logger
from ptnl.io.cache import file_sha256
from ptnl.noise.types import NoiseError

log = get_logger(__name__)

FORMAT = "ptnl-noisy-set/1"
FORMATS = (".csv", ".json")
KEY_COLUMNS = ("impath", "classname", "true_label")  # every other column is a given-label column
HEADER_KEYS = ("format", "dataset", "classes", "shots", "seed", "protocol", "type", "rate", "realised_rate",
               "num_samples", "split_file", "split_sha256")
Row = Dict[str, object]


def file_format(path: str) -> str:
    """``.csv`` or ``.json`` from ``path``'s extension; anything else is a one-line error."""
    ext = osp.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise NoiseError('Noisy-set file "{}": expected a .csv or .json name, got "{}"'.format(path, ext or path))
    return ext


def relative_impath(impath: str, root: str) -> str:
    """``impath`` relative to the dataset root, "/"-separated: how files name images."""
    return osp.relpath(osp.abspath(impath), osp.abspath(root)).replace(os.sep, "/")


def noisy_set_table(record: Dict, *, root: str, dataset: str, classnames: Sequence[str],
                    num_shots: Optional[int] = None, seed: Optional[int] = None) -> Tuple[Dict, List[Row]]:
    """(header, rows) of the training set a ``noise.json`` record describes.

    Args:
        record: a run's ``noise.json`` content (``samples`` with impath, true_label, label).
        root: DATASET.ROOT of the run; impaths are written relative to it.
        dataset, classnames: DATASET.NAME and the class list (label -> name).
        num_shots, seed: used where the record lacks them.
    """
    names = list(classnames)
    samples = record.get("samples")
    if not isinstance(samples, list):
        raise NoiseError("The noise record holds no samples list; it is not a noise.json of a run")
    rows = [{"impath": relative_impath(s["impath"], root), "classname": names[int(s["true_label"])],
             "true_label": int(s["true_label"]), "label": int(s["label"])} for s in samples]
    noisy = sum(r["true_label"] != r["label"] for r in rows)
    header = {
        "format": FORMAT, "dataset": dataset, "classes": names,
        "shots": record.get("num_shots", num_shots), "seed": record.get("seed", seed),
        "protocol": record.get("mode"), "type": record.get("type"), "rate": record.get("rate"),
        "realised_rate": noisy / max(len(rows), 1), "num_samples": len(rows),
        "split_file": record.get("split_file"), "split_sha256": record.get("split_sha256"),
    }
    if "file" in record:  # trained from a file: say which, so chains of files stay traceable
        header["source_file_sha256"] = record["file"].get("sha256")
    return header, rows


def write_noisy_set(path: str, header: Dict, rows: Sequence[Row]) -> None:
    """Write (header, rows) as CSV or JSON, by ``path``'s extension (atomically)."""
    ext = file_format(path)
    columns = list(KEY_COLUMNS) + [c for c in (rows[0] if rows else {"label": 0}) if c not in KEY_COLUMNS]
    if ext == ".json":
        samples = ",\n".join("  " + json.dumps({c: r[c] for c in columns}) for r in rows)
        text = '{{"header": {},\n "samples": [\n{}\n]}}\n'.format(json.dumps(header), samples)
        atomic_write(path, lambda f: f.write(text))  # one sample a line: readable, diffable, plain JSON
        return

    def write(f):
        for key, value in header.items():
            f.write("# {}: {}\n".format(key, json.dumps(value)))
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows({c: r[c] for c in columns} for r in rows)
    atomic_write(path, write)


def read_noisy_set(path: str) -> Tuple[Dict, List[Row], List[str]]:
    """(header, rows, given-label columns) of a noisy-set file; label cells are ints.

    Raises ``NoiseError`` naming the file and the first thing it cannot read."""
    ext = file_format(path)
    if not osp.isfile(path):
        raise NoiseError('DATASET.NOISE.FILE "{}" does not exist'.format(path))
    with open(path, newline="") as f:
        text = f.read()
    where = 'Noisy-set file "{}"'.format(path)
    if ext == ".json":
        try:
            payload = json.loads(text)
        except ValueError as e:
            raise NoiseError("{} is not valid JSON ({})".format(where, e)) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("samples"), list):
            raise NoiseError('{}: expected {{"header": {{...}}, "samples": [...]}}'.format(where))
        header, rows = payload.get("header") or {}, payload["samples"]
        if not all(isinstance(r, dict) for r in rows):
            raise NoiseError("{}: every sample must be an object of column: value".format(where))
        columns = list(rows[0]) if rows else []
    else:
        header, body = {}, []
        for n, line in enumerate(text.splitlines(keepends=True), 1):
            if not body and line.startswith("#"):
                key, sep, value = line[1:].strip().partition(":")
                try:
                    if not sep:
                        raise ValueError(line)
                    header[key.strip()] = json.loads(value)
                except ValueError:
                    raise NoiseError('{} line {}: expected a header line "# key: <JSON value>", got {!r}'.format(
                        where, n, line.strip())) from None
            else:
                body.append(line)
        reader = csv.DictReader(io.StringIO("".join(body)))
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if "impath" not in columns:
        raise NoiseError("{}: no impath column (columns: {})".format(where, ", ".join(columns) or "none"))
    label_columns = [c for c in columns if c not in KEY_COLUMNS]
    if not label_columns:
        raise NoiseError("{}: no given-label column besides {}".format(where, ", ".join(KEY_COLUMNS)))
    for n, row in enumerate(rows, 1):
        for c in [c for c in ("true_label",) if c in columns] + label_columns:
            try:
                row[c] = _as_label(row.get(c))
            except ValueError:
                raise NoiseError("{} row {}: column {} must be a class index, got {!r}".format(
                    where, n, c, row.get(c))) from None
    return header, rows, label_columns


def _as_label(value) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(str(value).strip())


def check_header(header: Dict, *, dataset: str, classnames: Sequence[str], path: str) -> None:
    """Refuse a file made for another dataset or class list, naming the first mismatch."""
    where = 'DATASET.NOISE.FILE "{}"'.format(path)
    if "dataset" not in header or "classes" not in header:
        raise NoiseError("{}: its header must name the dataset and the classes (# dataset: ..., # classes: "
                         "[...]); see docs/export.md".format(where))
    if header["dataset"] != dataset:
        raise NoiseError("{} is a noisy set of dataset {}, this run's dataset is {}".format(
            where, header["dataset"], dataset))
    theirs, ours = list(header["classes"]), list(classnames)
    for i, (a, b) in enumerate(zip(theirs, ours)):
        if a != b:
            raise NoiseError('{}: class {} is "{}" in the file and "{}" in this dataset'.format(where, i, a, b))
    if len(theirs) != len(ours):
        raise NoiseError("{}: the file lists {} classes, this dataset has {}".format(where, len(theirs), len(ours)))


def file_rows(path: str, column: str) -> Tuple[Dict, List[Row], str]:
    """(header, rows, column) with the given-label column chosen (DATASET.NOISE.FILE_COLUMN;
    empty: ``label``, or the file's only label column)."""
    header, rows, label_columns = read_noisy_set(path)
    if not column:
        column = "label" if "label" in label_columns or len(label_columns) != 1 else label_columns[0]
    if column not in label_columns:
        raise NoiseError('DATASET.NOISE.FILE "{}" has no given-label column "{}"; its label columns: {} (choose one '
                         "with DATASET.NOISE.FILE_COLUMN)".format(path, column, ", ".join(label_columns)))
    return header, rows, column


def match_rows(rows: Sequence[Row], column: str, known: Dict[str, object], classnames: Sequence[str], *,
               path: str, root: str) -> List[Tuple[object, int, int]]:
    """(dataset item, true label, given label) of each row, checked against the dataset: every image
    must be one of ``known`` (relative impath -> Datum), with the file's true label and class name
    (where it has them) equal to the dataset's. The first row that differs is a ``NoiseError``."""
    out = []
    num_classes = len(classnames)
    for n, row in enumerate(rows, 1):
        where = 'DATASET.NOISE.FILE "{}" row {}'.format(path, n)
        rel = str(row["impath"]).replace("\\", "/")
        item = known.get(osp.normpath(rel).replace(os.sep, "/"))
        if item is None:
            raise NoiseError('{}: image "{}" is not in this dataset\'s training split (under DATASET.ROOT "{}")'.format(
                where, rel, root))
        true = int(item.label)
        if "true_label" in row and row["true_label"] != true:
            raise NoiseError('{}: image "{}" is class {} ({}) in this dataset, the file says true_label {}'.format(
                where, rel, true, classnames[true], row["true_label"]))
        if row.get("classname") not in (None, "") and row["classname"] != classnames[true]:
            raise NoiseError('{}: image "{}" is a "{}" in this dataset, the file says "{}"'.format(
                where, rel, classnames[true], row["classname"]))
        given = row[column]
        if not 0 <= given < num_classes:
            raise NoiseError("{}: {} {} is not a class index (0 .. {})".format(where, column, given, num_classes - 1))
        out.append((item, true, given))
    return out


def describe_file(path: str, column: str, header: Dict) -> Dict:
    """The ``file`` entry of ``noise.json``: where the set came from and its content's sha256."""
    return {"path": osp.abspath(path), "sha256": file_sha256(path), "column": column,
            "header": {k: header[k] for k in HEADER_KEYS if k in header and k != "classes"}}
