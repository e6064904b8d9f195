"""The shipped paper-scale dataset configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from osnas.config import load_config
from osnas.registry import REGISTRIES

CONFIGS = sorted(p for pattern in ("cifar10_*", "cifar100_*", "imagenet_*", "face_*")
                 for p in (Path(__file__).resolve().parents[1] / "configs").glob(pattern + ".yaml"))
# the built-in spaces the configs may use
KNOWN_SPACES = {"proxylessnas", "spos", "fbnet_s", "fbnet_l", "mobilenetv2", "mobilefacenet", "sgnas"}


def test_every_dataset_family_has_a_config():
    names = {p.name.split("_")[0] for p in CONFIGS}
    assert names == {"cifar10", "cifar100", "imagenet", "face"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_dataset_config_validates(path):
    space = yaml.safe_load(path.read_text())["search_space"]["name"]
    assert space in KNOWN_SPACES and space in REGISTRIES["search_space"]
    config = load_config(path)
    assert config.dataflow.name in ("cifar10", "cifar100", "imagenet", "casia_webface")
    assert config.supernet.epochs >= 40 and config.final.epochs >= 60
    if config.dataflow.name == "casia_webface":
        assert config.task.name == "face_recognition" and config.criterion.name in ("arcface", "cosface")
