"""Bad data, config and run-directory input (issue 13, data/config/run half): exit code 2, one message naming
the file or key and what is valid, no traceback, no leftover files; and data files never run code."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest

from tests.datasets import run_cli, write_cifar10
from tests.test_bad_input import config, fails, lut_dir  # noqa: F401  (fixtures)


class Payload:
    """Unpickling this creates ``marker``: what a crafted data file or checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps({b"data": Payload(marker), b"labels": [0]})


# ----------------------------------------------------------------------------- §2 data files never run code


@pytest.mark.parametrize("layout", ["extracted", "archive"])
def test_cifar_payload_never_runs(capsys, tmp_path, config, layout):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar"
    write_cifar10(root, per_batch=4, extracted=layout == "extracted")
    if layout == "extracted":
        (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(planted_pickle(marker))
    else:
        archive = root / "cifar-10-python.tar.gz"
        with tarfile.open(archive) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        members["cifar-10-batches-py/data_batch_1"] = planted_pickle(marker)
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dataflow = {"name": "cifar10", "root": str(root), "batch_size": 2, "verify_md5": False}
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow=dataflow))
    assert not marker.exists()
    assert "data_batch_1" in msg and "refused to load posix.mkdir" in msg and "numpy arrays" in msg
    # with the checksum on (the default) the file is refused before it is even opened
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow={**dataflow, "verify_md5": True}))
    assert not marker.exists()
    assert "MD5" in msg and "is not the published" in msg and "verify_md5: false" in msg
