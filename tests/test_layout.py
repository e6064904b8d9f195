"""Memory layout of the training phases: ``channels_last: auto`` picks what was measured faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osnas.cli.profile import load_space
from osnas.config import validate_config
from osnas.errors import ConfigError
from osnas.search_spaces.child import build_child
from osnas.training import in_layout, use_channels_last

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("setting, device, amp, dtype, expected", [
    ("auto", CPU, "none", torch.float32, True),  # oneDNN: 0.44-0.60x the step time (BENCHMARKS.md, compilers)
    ("auto", CPU, "none", torch.float64, False),  # no NHWC kernels: twice the time
    ("auto", CUDA, "none", torch.float32, False),  # float32 on a GPU: no tensor cores to feed
    ("auto", CUDA, "fp16", torch.float32, True),
    (False, CPU, "none", torch.float32, False),
    (True, CUDA, "none", torch.float64, True),
])
def test_channels_last_setting(setting, device, amp, dtype, expected):
    assert use_channels_last(setting, device, amp, dtype) is expected


def test_in_layout_converts_the_convolutions_only_when_used():
    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    child = build_child(definition, definition.sample(np.random.default_rng(0), 1)[0])
    # weights whose two layouts differ (not 1x1, not depthwise: those are contiguous in both)
    convs = lambda net: [m.weight for m in net.modules()  # noqa: E731
                         if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) and m.weight.shape[1] > 1]
    assert convs(child) and not any(w.is_contiguous(memory_format=torch.channels_last) for w in convs(child))
    kept = in_layout(child, False, "none", CPU)
    assert not any(w.is_contiguous(memory_format=torch.channels_last) for w in convs(kept))
    assert in_layout(child.double(), "auto", "none", CPU) is child and not any(
        w.is_contiguous(memory_format=torch.channels_last) for w in convs(child))  # float64: default layout
    nhwc = in_layout(child.float(), "auto", "none", CPU)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs(nhwc))


def test_channels_last_accepts_auto_and_booleans_only():
    assert validate_config({"supernet": {"channels_last": "auto"}}).supernet.channels_last == "auto"
    assert validate_config({"final": {"channels_last": False}}).final.channels_last is False
    with pytest.raises(ConfigError, match="channels_last"):
        validate_config({"final": {"channels_last": "yes"}})
