"""Input sizes a search space can run: not so small that its first layer sees one pixel, not so large that the
first activation cannot fit in memory. Checked on the meta device, before anything is allocated."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from osnas.errors import ConfigError
from osnas.search_spaces.base import SearchSpace, SpaceDefinition

MIN_SIDE = 2  # a 1x1 first feature map leaves every later layer (and batch norm) a single value per channel
SIZE_LIMIT = 1 << 16  # beyond any image a network is trained on; bounds the smallest-size search below


def first_activation_side(definition: SpaceDefinition, input_size: int) -> tuple[int, int]:
    """(channels, side) of the first layer's output for a square input, computed on the meta device."""
    item = definition.body[0]
    with torch.device("meta"):
        layer = item.child_module([0] * len(item.entries())).eval()
        out = layer(torch.empty(1, definition.in_channels, input_size, input_size))
    return int(out.shape[1]), int(min(out.shape[2:]))


def smallest_input(definition: SpaceDefinition) -> int:
    return next(s for s in range(1, SIZE_LIMIT) if first_activation_side(definition, s)[1] >= MIN_SIDE)


def available_memory(device: torch.device) -> int:
    """Free bytes for tensors: the GPU's free memory, else the host's available memory (Linux), else unknown (0)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def check_input_size(space: SearchSpace, input_size: int, batch_size: int, device: torch.device | str, key: str,
                     element_size: int = 4) -> None:
    """Refuse an input size ``space`` cannot run, naming ``key`` (the option that set it) and what is valid.

    Runs before the data is loaded (a dataset resized to a huge input would exhaust memory first); the
    first layer's output does not depend on the number of input channels or classes, so the space is
    defined here for 3 channels and 2 classes.
    """
    if input_size > SIZE_LIMIT:
        raise ConfigError(f"{key}={input_size}: at most {SIZE_LIMIT} pixels")
    check_defined_input(space.define(input_size, 3, 2), batch_size, device, key, element_size)


def check_defined_input(definition: SpaceDefinition, batch_size: int, device: torch.device | str, key: str,
                        element_size: int = 4) -> None:
    """:func:`check_input_size` for a space already defined at its input size (``osnas profile``)."""
    input_size = definition.input_size
    if input_size > SIZE_LIMIT:
        raise ConfigError(f"{key}={input_size}: at most {SIZE_LIMIT} pixels")
    channels, side = first_activation_side(definition, input_size)
    if side < MIN_SIDE:
        raise ConfigError(f"{key}={input_size} is too small for search space {definition.name!r}: its first layer "
                          f"would give a {side}x{side} feature map; the smallest input it can run is "
                          f"{smallest_input(definition)}")
    needed = batch_size * element_size * channels * side * side
    free = available_memory(torch.device(device))
    if free and needed > free:
        raise ConfigError(
            f"{key}={input_size}: the first activation of a batch of {batch_size} alone needs "
            f"{needed / 2**30:.1f} GiB ({channels}x{side}x{side} values per sample), but only "
            f"{free / 2**30:.1f} GiB of memory is available on {device}; use a smaller input size or batch"
        )
