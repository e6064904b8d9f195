"""LFW verification pairs: the standard ``pairs.txt`` and the ``<name>/<name>_<idx:04d>.jpg`` image folder.

``pairs.txt`` starts with ``<folds> <n>`` (``10 300`` for the 10-fold View 2 file;
a single ``<n>`` for the one-fold development files), then per fold ``n``
same-person lines ``name idx1 idx2`` and ``n`` different-person lines
``name1 idx1 name2 idx2``. Pairs keep the file order, so equal contiguous chunks
are the official folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osnas.dataflows.folder import path_array
from osnas.errors import DataError

PAIR_FORMAT = "'name idx1 idx2' (same person) or 'name1 idx1 name2 idx2' (different people)"


@dataclass(frozen=True)
class Pairs:
    """Image pairs in file order: (N, 2) paths relative to the LFW folder and (N,) same-person flags."""

    rel: np.ndarray
    same: np.ndarray
    folds: int


def image_path(name: str, index: str) -> str:
    return f"{name}/{name}_{int(index):04d}.jpg"


def find_pairs_file(lfw_root: Path, pairs: str | None) -> Path:
    """The configured pairs file, else ``pairs.txt`` inside or beside the image folder."""
    candidates = [Path(pairs).expanduser()] if pairs else [lfw_root / "pairs.txt", lfw_root.parent / "pairs.txt"]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"LFW pairs file not found: put pairs.txt at {' or '.join(map(str, candidates))}"
                    f"{'' if pairs else ' (or set dataflow.lfw_pairs)'}")


def parse_header(path: Path, line: str) -> tuple[int, int]:
    """(folds, number of pairs listed)."""
    try:
        numbers = [int(t) for t in line.split()]
    except ValueError:
        numbers = []
    if len(numbers) == 2 and min(numbers) > 0:
        return numbers[0], 2 * numbers[0] * numbers[1]
    if len(numbers) == 1 and numbers[0] > 0:
        return 1, 2 * numbers[0]
    raise DataError(f"{path}:1: header must be '<folds> <pairs per fold and class>' (e.g. '10 300') or '<pairs>', "
                    f"got {line!r}")


def read_pairs(lfw_root: Path, pairs: str | None = None) -> Pairs:
    """Parse and check a pairs file; every image it names must exist under ``lfw_root``."""
    if not lfw_root.is_dir():
        raise DataError(f"LFW image folder {lfw_root} does not exist; expected {lfw_root}/<name>/<name>_0001.jpg "
                        "(set dataflow.lfw_root)")
    path = find_pairs_file(lfw_root, pairs)
    lines = [(i + 1, line.split()) for i, line in enumerate(path.read_text().splitlines())]
    lines = [(n, fields) for n, fields in lines if fields]
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    folds, expected = parse_header(path, " ".join(lines[0][1]))
    body = lines[1:]
    if len(body) != expected:
        raise DataError(f"{path}: the header announces {expected} pairs but the file lists {len(body)}")
    rel, same = [], []
    for lineno, fields in body:
        try:
            if len(fields) == 3:
                pair = (image_path(fields[0], fields[1]), image_path(fields[0], fields[2]))
            elif len(fields) == 4:
                pair = (image_path(fields[0], fields[1]), image_path(fields[2], fields[3]))
            else:
                raise ValueError
        except ValueError:
            raise DataError(f"{path}:{lineno}: expected {PAIR_FORMAT}, got {' '.join(fields)!r}") from None
        for image in pair:
            if not (lfw_root / image).is_file():
                raise DataError(f"{path}:{lineno} names {lfw_root / image}, which does not exist")
        rel.append(pair)
        same.append(len(fields) == 3)
    return Pairs(path_array(rel), np.array(same, dtype=bool), folds)
