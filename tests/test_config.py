"""Typed config: defaults, overrides and one clear error per class of bad input."""

from pathlib import Path

import pytest
import yaml

from osnas.config import apply_overrides, load_config, validate_config
from osnas.errors import ConfigError
from tests.conftest import run_osnas

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_fill_everything():
    cfg = validate_config({})
    assert cfg.search_space.name == "proxylessnas"
    assert cfg.dataflow.options.batch_size == 64
    dumped = cfg.dump()
    assert dumped["supernet"]["optimizer"]["lr"] == pytest.approx(0.05)
    assert dumped["search_strategy"]["name"] == "evolution"
    # the dump is itself a valid config that resolves to the same thing
    assert validate_config(yaml.safe_load(cfg.to_yaml())).dump() == dumped


def test_quickstart_is_valid():
    cfg = load_config(QUICKSTART)
    assert cfg.constraint.metric == "macs"


def test_overrides_any_key():
    cfg = load_config(QUICKSTART, ["supernet.epochs=3", "search_space.width_mult=0.75", "constraint.min=1",
                                   "search_strategy=random", "search_strategy.num_samples=7"])
    assert cfg.supernet.epochs == 3
    assert cfg.search_space.options.width_mult == 0.75
    assert cfg.constraint.min == 1.0
    assert cfg.search_strategy.name == "random" and cfg.search_strategy.options.num_samples == 7


def test_override_errors():
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_overrides({}, ["supernet.epochs"])
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seed: [1, 2\n", "malformed YAML (line"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("sed: 1\n", "unknown key 'sed'; valid keys here: seed, device"),
        ("supernet: {optimizer: {lrr: 0.1}}\n", "unknown key 'supernet.optimizer.lrr'; valid keys here: name, lr"),
        ("search_space: {name: proxylessnas, widht: 1}\n", "unknown key 'search_space.widht'; valid keys here: width_mult"),
        ("search_space: nasnet\n", "unknown search_space 'nasnet'; registered: "),
        ("supernet: {epochs: many}\n", "key 'supernet.epochs'"),
        ("supernet: {epochs: 0}\n", "greater than 0"),
        ("dataflow: {batch_size: -1}\n", "key 'dataflow.batch_size'"),
        ("final: {optimizer: {lr: 0}}\n", "key 'final.optimizer.lr'"),
        ("constraint: {metric: flops}\n", "'macs', 'params' or 'latency'"),
        ("constraint: {max: 1, min: 2}\n", "is larger than constraint.max"),
        ("device: tpu\n", "device must be one of"),
        ("dtype: float16\n", "key 'dtype': got 'float16'; input should be 'float32' or 'float64'"),
        ("dtype: float64\nfinal: {amp: bf16}\n", "final.amp (bf16) computes in half precision"),
        # a union field: one line, not one per member with pydantic's member tags
        ("final: {channels_last: maybe}\n", "key 'final.channels_last': got 'maybe'; expected true or false or one of auto"),
        ("criterion: {name: focal, alpha: [1, -2]}\n",
         "key 'criterion.alpha': got [1, -2]; expected a number > 0 or list or null; at 1: input should be greater than 0"),
    ],
)
def test_bad_config_messages(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "literal[" not in str(info.value) and str(info.value).count(str(path)) == 1  # one problem, one line


def test_wrong_type_names_expected_type(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "supernet: {epochs: many}\n"))
    assert "expected an integer > 0" in str(info.value)


def test_cli_bad_config_exit_code_2_and_no_run_dir(tmp_path):
    path = write(tmp_path, f"output: {{dir: {tmp_path / 'runs'}}}\nsupernet: {{epochs: 0}}\n")
    proc = run_osnas("search", "--config", str(path))
    assert proc.returncode == 2
    assert "supernet.epochs" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
    proc = run_osnas("search", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "config file not found" in proc.stderr
    proc = run_osnas("--debug", "search", "--config", str(path))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_config_command_prints_resolved(tmp_path):
    proc = run_osnas("config", str(QUICKSTART), "--set", "supernet.epochs=2")
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["supernet"]["epochs"] == 2
    assert data["search_space"]["width_mult"] == 0.5
    assert "lookup_table" in data
