"""The one stage builder: its grammar, and every registered space unchanged by being written in it.

``tests/data/space_snapshots.json`` was recorded (``python tests/space_snapshot.py``) from the
code before the spaces used the builder; every space must still give the same definition
fingerprint, lookup-table costs and parameter counts.
"""

from __future__ import annotations

import json

import pytest

from osnas.registry import REGISTRIES
from osnas.search_spaces.base import Choice, op
from osnas.search_spaces.stages import Stage, build_stages, choice_of, layout_strides
from tests import space_snapshot

RECORDED = json.loads(space_snapshot.FILE.read_text())
FULL, *OTHERS = space_snapshot.SETTINGS  # every number at the first setting, the fingerprint at the others


def recorded(name: str, setting: tuple) -> dict:
    key = space_snapshot.key(name, *setting)
    if key not in RECORDED:
        pytest.skip(f"no snapshot recorded for {key}: a space added after the stage builder "
                    f"(record it with python tests/space_snapshot.py)")
    return RECORDED[key]


@pytest.mark.parametrize("name", REGISTRIES["search_space"].names())
def test_space_keeps_its_fingerprint_costs_and_parameter_counts(name):
    assert space_snapshot.snapshot(name, *FULL) == recorded(name, FULL)


@pytest.mark.parametrize("name", REGISTRIES["search_space"].names())
def test_space_keeps_its_fingerprint_at_other_sizes_and_widths(name):
    cls = REGISTRIES["search_space"].get(name)
    for size, channels, outputs, options in OTHERS:
        if space_snapshot.accepts(name, options):
            definition = cls(cls.Options(**options)).define(size, channels, outputs)
            assert definition.fingerprint() == recorded(name, (size, channels, outputs, options))["fingerprint"]


def test_build_stages_decodes_widths_strides_and_where_a_layer_may_be_skipped():
    table = [Stage(16, 2, 2), Stage(24, 1, 1), Stage(24, 2, 2)]
    assert layout_strides(table, 224) == (2, [2, 1, 2])
    assert layout_strides(table, 8) == (1, [1, 1, 2])  # small inputs drop the earliest downsamplings
    candidates = (op("conv_bn_act", "c3", kernel=3),)
    with_zero = (*candidates, op("skip", "zero"))
    items, out = build_stages(8, table, [2, 1, 2], 0.5, choice_of(lambda keep: with_zero if keep else candidates))
    assert out == 16  # make_divisible(24 * 0.5)
    assert [(i.in_ch, i.out_ch, i.stride) for i in items] == [(8, 8, 2), (8, 8, 1), (8, 16, 1), (16, 16, 2),
                                                              (16, 16, 1)]
    assert all(isinstance(i, Choice) for i in items)
    assert [len(i.candidates) for i in items] == [1, 2, 1, 1, 2]
