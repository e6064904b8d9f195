"""Dataflows on tiny data written in the real on-disk formats; augmentation ops; splits; ``osnas data check``."""

from __future__ import annotations

import io
import logging
import pickle
import tarfile

import numpy as np
import pytest
import torch
from rich.console import Console

from osnas.cli.data import counts_table
from osnas.dataflows.augment import random_crop_flip
from osnas.dataflows.cifar import CIFAR10
from osnas.dataflows.download import download, md5sum
from osnas.dataflows.memory import TensorLoader
from osnas.errors import DataError
from osnas.registry import REGISTRIES
from tests.datasets import run_cli, write_cifar10, write_class_folders, write_jpeg

CPU = torch.device("cpu")


def dataflow(name: str, seed: int = 0, **options):
    cls = REGISTRIES["dataflow"].get(name)
    return cls(cls.Options(**options), seed, CPU)


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


# ----------------------------------------------------------------------------- augmentation


def reference_crop_flip(images, padding, hflip, seed):
    """One sample at a time, with the draws random_crop_flip documents: row offsets, column offsets, flips."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=g) if padding else torch.zeros(n, dtype=torch.long)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=g) if padding else torch.zeros(n, dtype=torch.long)
    flip = torch.rand(n, generator=g) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    out = [padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)]
    return torch.stack([o.flip(-1) if f else o for o, f in zip(out, flip)]), flip


@pytest.mark.parametrize("padding,hflip", [(2, True), (2, False), (0, True), (3, True)])
def test_random_crop_flip_equals_the_per_sample_crop_and_flip(padding, hflip):
    images = torch.arange(40 * 3 * 6 * 5, dtype=torch.int64).reshape(40, 3, 6, 5).remainder(251).to(torch.uint8)
    out = random_crop_flip(images, padding, hflip, torch.Generator().manual_seed(3))
    expected, flip = reference_crop_flip(images, padding, hflip, 3)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, expected)
    if hflip:
        assert 5 < int(flip.sum()) < 35  # some flipped, some kept
    if padding:
        assert (out == 0).any()  # some crops reach into the zero border
    assert not torch.equal(out, images)


def test_random_crop_flip_without_options_returns_the_batch():
    images = torch.rand(4, 1, 3, 3)
    assert random_crop_flip(images, 0, False) is images


def test_tensor_loader_normalises_uint8_and_resumes_its_order():
    images = torch.full((10, 3, 4, 4), 51, dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(10), 4, shuffle=True, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    x, _ = next(iter(loader))
    assert x.dtype == torch.float32
    assert torch.allclose(x[:, 1], torch.full_like(x[:, 1], (0.2 - 0.2) / 0.5), atol=1e-6)
    assert torch.allclose(x[:, 0], torch.full_like(x[:, 0], (0.2 - 0.1) / 0.5), atol=1e-6)
    state = loader.state_dict()
    first = [y for _, y in loader]
    loader.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first, [y for _, y in loader]))


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("extracted", [False, True])
def test_cifar10_reads_the_python_version_files(tmp_path, extracted):
    written = write_cifar10(tmp_path, per_batch=20, extracted=extracted)
    flow = dataflow("cifar10", root=str(tmp_path), batch_size=8, val_fraction=0.25, verify_md5=False)
    assert (flow.num_classes, flow.in_channels, flow.input_size) == (10, 3, 32)
    assert flow.train_x.dtype == torch.uint8 and flow.train_x.shape == (100, 3, 32, 32)
    first = written["data_batch_1"]
    assert torch.equal(flow.train_x[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert flow.train_y[:20].tolist() == first[b"labels"]
    summary = flow.summary()
    assert sum(summary["train"].values()) == 100 and sum(summary["test"].values()) == 20
    assert sum(summary["search_val"].values()) == 25 and sum(summary["search_train"].values()) == 75
    search_train, search_val = set(flow.search_train_idx), set(flow.search_val_idx)
    assert not search_train & search_val and search_train | search_val == set(range(100))
    train, val = flow.search_split()
    x, y = next(iter(train))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # the eval loader only normalises: the first image is the raw pixels, standardised
    x_val, _ = next(iter(val))
    raw = flow.train_x[flow.search_val_idx[0]].float() / 255
    expected = (raw - torch.tensor(CIFAR10.mean)[:, None, None]) / torch.tensor(CIFAR10.std)[:, None, None]
    assert torch.allclose(x_val[0], expected, atol=1e-5)


def test_cifar_missing_files_name_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=f"put cifar-10-python.tar.gz .* in {tmp_path}/"):
        dataflow("cifar10", root=str(tmp_path))
    write_cifar10(tmp_path, per_batch=4, extracted=True)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        dataflow("cifar10", root=str(tmp_path), batch_size=2, verify_md5=False)


def test_cifar_archive_without_a_batch_names_the_member(tmp_path):
    write_cifar10(tmp_path, per_batch=4)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            if not name.endswith("test_batch"):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="has no member cifar-10-batches-py/test_batch"):
        dataflow("cifar10", root=str(tmp_path), batch_size=2, verify_md5=False)
    archive.write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(DataError, match="not a readable .tar.gz archive"):
        dataflow("cifar10", root=str(tmp_path), batch_size=2, verify_md5=False)


def test_cifar_malformed_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path, per_batch=4, extracted=True)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=f"{bad}: not a CIFAR-10"):
        dataflow("cifar10", root=str(tmp_path), batch_size=2, verify_md5=False)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"must be \(N, 3072\)"):
        dataflow("cifar10", root=str(tmp_path), batch_size=2, verify_md5=False)


def test_cifar_input_size_is_native():
    with pytest.raises(ValueError, match="must be 32"):
        REGISTRIES["dataflow"].get("cifar100").Options(input_size=16)


def test_download_verifies_the_checksum(tmp_path):
    source = tmp_path / "archive.tar.gz"
    source.write_bytes(b"payload")
    dest = tmp_path / "data" / "got.tar.gz"
    with pytest.raises(DataError, match="expected 0+; the file was discarded"):
        download(source.as_uri(), dest, "0" * 32)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    assert download(source.as_uri(), dest, md5sum(source)).read_bytes() == b"payload"


# ----------------------------------------------------------------------------- ImageNet folders


@pytest.fixture
def imagenet_root(tmp_path):
    write_class_folders(tmp_path / "train", {"n01": 6, "n02": 6, "n03": 6})
    write_class_folders(tmp_path / "val", {"n01": 2, "n02": 2, "n03": 2})
    return tmp_path


def test_imagenet_folder_batches_and_splits(imagenet_root):
    flow = dataflow("imagenet", root=str(imagenet_root), input_size=16, batch_size=4, num_workers=0,
                    val_fraction=0.34)
    assert flow.num_classes == 3 and flow.classes == ["n01", "n02", "n03"]
    summary = flow.summary()
    assert summary["train"] == {"n01": 6, "n02": 6, "n03": 6} and summary["test"] == {"n01": 2, "n02": 2, "n03": 2}
    train_idx, val_idx = set(flow.search_train_idx), set(flow.search_val_idx)
    assert not train_idx & val_idx and len(train_idx | val_idx) == 18
    train, val = flow.search_split()
    x, y = next(iter(train))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    _, test = flow.final_split()
    assert sum(len(y) for _, y in test) == 6


def test_folder_loader_is_seeded_per_sample_and_resumable(imagenet_root):
    options = dict(root=str(imagenet_root), input_size=16, batch_size=4, val_fraction=0.34)
    train0, _ = dataflow("imagenet", num_workers=0, **options).search_split()
    state = train0.state_dict()
    reference = batches(train0)
    train1, _ = dataflow("imagenet", num_workers=1, **options).search_split()
    with_worker = batches(train1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(reference, with_worker))
    second_epoch = batches(train0)
    train0.load_state_dict(state)
    again = batches(train0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(reference, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(reference, second_epoch))


def test_folder_eval_preprocessing_is_centre_crop_and_normalisation(tmp_path):
    write_jpeg(tmp_path / "train" / "a" / "x.jpg", (255, 0, 0), size=(40, 20))
    write_jpeg(tmp_path / "train" / "b" / "y.jpg", (0, 0, 255), size=(20, 40))
    for cls in "ab":
        write_jpeg(tmp_path / "val" / cls / "z.jpg", (128, 128, 128))
    flow = dataflow("imagenet", root=str(tmp_path), input_size=8, batch_size=1, val_fraction=0.5)
    _, test = flow.final_split()
    x, _ = next(iter(test))
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert x.shape == (1, 3, 8, 8)
    assert torch.allclose(x[0].mean(dim=(1, 2)), expected, atol=0.05)


def test_corrupt_images_are_skipped_counted_and_warned(imagenet_root, caplog):
    (imagenet_root / "val" / "n02" / "n02_0001.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    truncated = imagenet_root / "val" / "n03" / "n03_0002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:60])
    flow = dataflow("imagenet", root=str(imagenet_root), input_size=16, batch_size=4, val_fraction=0.34)
    _, test = flow.final_split()
    with caplog.at_level(logging.WARNING, logger="osnas"):
        seen = sum(len(y) for _, y in test)
    assert seen == 4 and test.skipped == 2
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2" in warnings[0].getMessage()


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "val").rename(root / "valid"), "val split: folder .*val does not exist"),
    (lambda root: [p.unlink() for p in (root / "train" / "n02").iterdir()], "class folder .*n02 holds no images"),
    (lambda root: write_jpeg(root / "val" / "n04" / "a.jpg", (0, 0, 0)), "must hold the same class folders; differing: n04"),
    (lambda root: write_jpeg(root / "val" / "loose.jpg", (0, 0, 0)), "holds images directly"),
])
def test_malformed_image_folders_name_the_path(imagenet_root, damage, message):
    damage(imagenet_root)
    with pytest.raises(DataError, match=message):
        dataflow("imagenet", root=str(imagenet_root), input_size=16, batch_size=2)


# ----------------------------------------------------------------------------- data check


def table_cells(line: str) -> list[str]:
    return line.replace("│", " ").split()


def test_data_check_prints_counts_per_split_and_class(tmp_path, imagenet_root, capsys):
    config = tmp_path / "check.yaml"
    config.write_text(f"dataflow: {{name: imagenet, root: {imagenet_root}, input_size: 16, batch_size: 2, "
                      "num_workers: 0, val_fraction: 0.3333}\n")
    code, out, err = run_cli(capsys, "data", "check", "--config", str(config))
    assert code == 0, err
    rows = {cells[0]: cells[1:] for cells in map(table_cells, out.splitlines()) if cells}
    # class rows: search_train, search_val, train, test counts
    assert rows["n01"] == ["4", "2", "6", "2"] and rows["total"] == ["12", "6", "18", "6"]
    assert "(2, 3, 16, 16)" in out  # one batch of each split was decoded
    (imagenet_root / "val").rename(imagenet_root / "elsewhere")
    code, out, err = run_cli(capsys, "data", "check", "--config", str(config), "--set", "dataflow.batch_size=3")
    assert code == 2 and f"{imagenet_root / 'val'} does not exist" in " ".join(err.split())
    assert "Traceback" not in err


def test_data_check_summarises_many_classes():
    summary = {"train": {str(c): c + 1 for c in range(30)}, "test": {"0": 5, "1": 7}}
    console = Console(width=200, record=True)
    console.print(counts_table(summary))
    rows = {cells[0]: cells for cells in map(table_cells, console.export_text().splitlines()) if cells}
    train, test = rows["train"], rows["test"]
    # samples, classes, min, median, max
    assert train[1:] == ["465", "30", "1", "15.5", "30"] and test[1:] == ["12", "2", "5", "6", "7"]


def test_digits_search_splits_and_test_split_share_no_sample():
    flow = dataflow("digits", input_size=8, batch_size=16)
    train, val, test = set(flow.search_train_idx), set(flow.search_val_idx), set(flow.test_idx)
    assert not (train & val or train & test or val & test)
    assert train | val == set(flow.train_idx) and len(train | val | test) == 1797
