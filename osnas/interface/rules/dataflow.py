"""Dataflow rules, with the default options, seed 0, on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from osnas.dataflows.base import Dataflow
from osnas.interface.contract import CPU, Broken, Skipped, Subject, rule, saved_and_loaded, shape

MAX_BATCHES = 64  # batches of each split read: the first ones show the shapes of large data


def dataflow(s: Subject) -> Dataflow:
    return s.cls(s.options, 0, CPU)


def data(s: Subject) -> Dataflow:
    return s.shared("data", lambda: dataflow(s))


def splits(data: Dataflow) -> dict[str, Any]:
    (search_train, search_val), (train, test) = data.search_split(), data.final_split()
    return {"search_train": search_train, "search_val": search_val, "train": train, "test": test}


@rule("dataflow", "num_classes, in_channels and input_size are positive ints (at least 2 classes)")
def check_attributes(s: Subject) -> str:
    values = {"num_classes": data(s).num_classes, "in_channels": data(s).in_channels, "input_size": data(s).input_size}
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (2 if key == "num_classes" else 1):
            raise Broken(f"{key} is {value!r}")
    return ", ".join(f"{k}={v}" for k, v in values.items())


@rule("dataflow", "every split yields len(loader) batches of float (B, C, S, S) images and int64 (B,) labels in "
                  "0..num_classes-1 on the device, B <= batch_size (a verification split: 2B images of B pairs "
                  "and bool (B,) same-identity labels)")
def check_batches(s: Subject) -> str:
    d = data(s)
    loaders = splits(d)
    for split, loader in loaders.items():
        count = 0
        for x, y in loader:
            count += 1
            check_batch(d, split, loader.batch_size, x, y)
            if count == MAX_BATCHES:  # large data: the first batches show the shapes
                break
        if count < MAX_BATCHES and count != len(loader):
            raise Broken(f"{split}: len(loader) is {len(loader)} but it yielded {count} batches")
    return ", ".join(f"{k}: {v.num_samples} samples" for k, v in loaders.items())


def check_batch(d: Dataflow, split: str, batch_size: int, x: Any, y: Any) -> None:
    """Images (B, C, S, S) with int64 (B,) labels, or a verification batch: the 2B images of B pairs (first
    images, then their partners) with bool (B,) same-identity labels."""
    image_shape = (d.in_channels, d.input_size, d.input_size)
    pairs = isinstance(y, torch.Tensor) and y.dtype == torch.bool
    per_label = 2 if pairs else 1
    if (not isinstance(x, torch.Tensor) or not x.is_floating_point() or tuple(x.shape[1:]) != image_shape
            or not 0 < x.shape[0] <= per_label * batch_size or x.shape[0] % per_label):
        expected = f"2B, {', '.join(map(str, image_shape))}) for B pairs" if pairs else \
            f"B, {', '.join(map(str, image_shape))})"
        raise Broken(f"{split}: a batch of images is {shape(x)} {getattr(x, 'dtype', '')}; expected float "
                     f"({expected} with B <= {batch_size}")
    if pairs:
        if tuple(y.shape) != (x.shape[0] // 2,):
            raise Broken(f"{split}: a batch of pair labels is {shape(y)}; expected bool ({x.shape[0] // 2},)")
    elif not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],):
        raise Broken(f"{split}: a batch of labels is {shape(y)} {getattr(y, 'dtype', '')}; expected int64 "
                     f"({x.shape[0]},)")
    elif y.min() < 0 or y.max() >= d.num_classes:
        raise Broken(f"{split}: a label is outside 0..{d.num_classes - 1}")
    if x.device != d.device or y.device != d.device:
        raise Broken(f"{split}: batches are on {x.device}, not on the dataflow's device {d.device}")


def rows(loader: Any) -> set[bytes] | set[str]:
    """What identifies each sample: its pixels (an in-memory loader's ``.images``) or its files (a folder
    loader's ``.dataset.root`` and ``.rel``)."""
    images = getattr(loader, "images", None)
    if isinstance(images, torch.Tensor):
        return {row.numpy().tobytes() for row in images.detach().cpu().reshape(images.shape[0], -1)}
    dataset = getattr(loader, "dataset", None)
    files = getattr(dataset, "rel", None)
    if isinstance(files, np.ndarray):
        return {str(Path(dataset.root) / str(f)) for f in files.reshape(-1)}
    raise Skipped("the loaders expose neither an .images tensor (TensorLoader) nor their files (.dataset.root and "
                  ".dataset.rel, as FolderLoader does), so sample overlap is not checked")


@rule("dataflow", "validation shares no sample with search training, nor test with final training")
def check_disjoint(s: Subject) -> str:
    loaders = splits(data(s))
    for held_out, train in (("search_val", "search_train"), ("test", "train")):
        shared = rows(loaders[held_out]) & rows(loaders[train])
        if shared:
            raise Broken(f"{len(shared)} {held_out} sample(s) also appear in {train}")
    return "search_val/search_train and test/train are disjoint"


def first_batch(loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


@rule("dataflow", "the same seed serves the same validation and test data")
def check_seeded(s: Subject) -> None:
    again = splits(dataflow(s))
    for split, loader in splits(data(s)).items():
        if split in ("search_val", "test"):
            a, b = first_batch(loader), first_batch(again[split])
            if not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])):
                raise Broken(f"two dataflows built with seed 0 serve different {split} batches")


@rule("dataflow", "a training loader's state_dict survives a checkpoint and replays the same batches (resume)")
def check_resume(s: Subject) -> None:
    loader = data(s).search_split()[0]
    state = saved_and_loaded(loader.state_dict(), "the training loader's state_dict()")
    x1, y1 = first_batch(loader)
    loader.load_state_dict(state)
    x2, y2 = first_batch(loader)
    if not (torch.equal(x1, x2) and torch.equal(y1, y2)):
        raise Broken("after load_state_dict(state) the training loader serves other batches than after the state "
                     "was taken; a resumed run would see other data")


@rule("dataflow", "summary() maps each split to {class: count} with int counts")
def check_summary(s: Subject) -> None:
    summary = data(s).summary()
    if not isinstance(summary, dict) or not summary:
        raise Broken(f"summary() returns {summary!r}")
    for split, counts in summary.items():
        if not isinstance(counts, dict) or not all(isinstance(c, int) for c in counts.values()):
            raise Broken(f"summary()[{split!r}] is {counts!r}; expected {{class: count}}")
