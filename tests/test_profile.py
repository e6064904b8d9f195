"""``osnas profile``: counts of a preset through the CLI, and one clear error (exit 2) for bad architectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from osnas.cli import main
from tests.conftest import run_osnas


def test_profile_json_reproduces_proxyless_mobile():
    """ProxylessNAS-Mobile at 224x224, 1000 classes: published 320M MACs and 4.1M params (within 3%)."""
    proc = run_osnas("profile", "--search-space", "proxylessnas", "--arch", "proxyless_mobile", "--json",
                     "--runs", "1", env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"macs", "params", "latency_ms"}
    assert abs(result["macs"] - 320e6) <= 0.03 * 320e6
    assert abs(result["params"] - 4.1e6) <= 0.03 * 4.1e6
    assert result["latency_ms"] > 0


def osnas_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point (argument parsing, error handling, exit code) without a new interpreter."""
    monkeypatch.setattr(sys, "argv", ["osnas", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


SMALL = ["--input-size", "32", "--classes", "10", "--set-space", "width_mult=0.25", "--runs", "1"]


def test_profile_prints_a_table_for_a_searched_architecture(monkeypatch, capsys, tmp_path: Path):
    arch = tmp_path / "architecture.json"
    arch.write_text(json.dumps({"space": "spos", "indices": [3] * 20, "candidates": ["xception"] * 20}))
    code, out, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "spos", "--arch", str(arch), *SMALL)
    assert code == 0, err
    assert "MACs" in out and "params" in out and "latency" in out


def test_unknown_preset_lists_the_presets(monkeypatch, capsys):
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "fbnet_l", "--arch", "fbnet_z", *SMALL)
    assert code == 2
    assert "unknown preset 'fbnet_z'" in err and "fbnet_b, fbnet_c" in err
    assert "Traceback" not in err


def test_architecture_of_wrong_length_names_the_lengths(monkeypatch, capsys, tmp_path: Path):
    arch = tmp_path / "architecture.json"
    arch.write_text(json.dumps({"space": "mobilenetv2", "indices": [0] * 5}))
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "mobilenetv2", "--arch", str(arch), *SMALL)
    assert code == 2
    assert str(arch) in err and "5 entries" in err and "16 searchable layers" in err


def test_index_out_of_range_names_the_layer_and_range(monkeypatch, capsys, tmp_path: Path):
    arch = tmp_path / "architecture.json"
    arch.write_text(json.dumps({"space": "spos", "indices": [0] * 7 + [4] + [0] * 12}))
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "spos", "--arch", str(arch), *SMALL)
    assert code == 2
    assert "layer 7 has index 4" in err and "0..3" in err


@pytest.mark.parametrize(
    "content, message",
    [
        ({"space": "spos", "indices": [0] * 20}, "architecture is for space 'spos', not 'fbnet_s'"),
        ({"space": "fbnet_s"}, "not an architecture file"),
    ],
)
def test_architecture_file_for_another_space_is_refused(monkeypatch, capsys, tmp_path: Path, content, message):
    arch = tmp_path / "architecture.json"
    arch.write_text(json.dumps(content))
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "fbnet_s", "--arch", str(arch), *SMALL)
    assert code == 2
    assert message in err


def test_unknown_space_and_bad_options_are_one_clear_error(monkeypatch, capsys):
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "resnet", "--arch", "x")
    assert code == 2 and "unknown search_space 'resnet'" in err and "mobilenetv2" in err
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "spos", "--arch", "spos_block",
                                    "--set-space", "depth=3")
    assert code == 2 and "search_space.depth" in err and "width_mult" in err
