"""The Python API (``osnas.search``, ``load_run``, ``build_space``, ``profile``, ``list_components``), the README's
"From Python" snippets, ``osnas profile --arch RUN_DIR`` and the validation of run files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import osnas
import osnas.api
from osnas import artifacts
from osnas.errors import OsnasError
from tests.conftest import ROOT, osnas_env
from tests.small_config import small_config
from tests.test_profile import osnas_in_process


def tiny(tmp_path: Path) -> dict:
    """Overrides (dotted keys) that make any digits config run in seconds, writing under ``tmp_path``."""
    return {"device": "cpu", "dataflow.input_size": 8, "dataflow.batch_size": 64, "dataflow.val_fraction": 0.5,
            "dataflow.test_fraction": 0.8, "search_strategy.population": 4, "search_strategy.generations": 1,
            "search_strategy.top_k": 2, "supernet.epochs": 1, "final.epochs": 1, "evaluation.bn_batches": 1,
            "evaluation.val_batches": 1, "lookup_table.latency": False, "lookup_table.cache_dir": str(tmp_path / "luts"),
            "logging.progress": False, "output.dir": str(tmp_path / "runs")}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> osnas.api.Run:
    tmp = tmp_path_factory.mktemp("api")
    return osnas.search(small_config(tmp, tmp / "luts"), final={"epochs": 1}, **{"supernet.epochs": 1})


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_from_python_snippets_run(tmp_path, monkeypatch):
    snippets = readme_snippets()
    assert len(snippets) == 2
    search = osnas.api.search
    monkeypatch.setattr(osnas.api, "search", lambda config, **kw: search(config, **{**kw, **tiny(tmp_path)}))
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    for snippet in snippets:
        exec(compile(snippet, "README.md", "exec"), scope)
    run, model, fresh = scope["run"], scope["model"], scope["fresh"]
    assert run.path.parent == tmp_path / "runs" and run.config.supernet.epochs == 1  # tiny budget won
    assert not model.training
    assert sum(p.numel() for p in fresh.parameters()) == run.results.params
    assert scope["again"].path == run.path
    assert scope["net"](torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert scope["table"].table.shape[1] == scope["space"].definition.num_layers


def test_a_run_rebuilds_its_networks(run):
    results, record = run.results, run.architecture
    assert record.format == artifacts.ARCHITECTURE_FORMAT
    assert (record.input_size, record.in_channels, record.num_outputs) == (8, 1, 10)
    assert record.space_options["width_mult"] == 0.25
    model = run.model()
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == results.params
    assert sum(p.numel() for p in run.child().parameters()) == results.params
    saved = torch.load(run.path / artifacts.MODEL, weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    supernet = run.supernet()
    saved = torch.load(run.path / artifacts.SUPERNET, weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in supernet.state_dict().items())
    assert osnas.load_run(run.path).results == results


def test_profile_of_a_run_matches_its_results(run, monkeypatch, capsys):
    expected = {"macs": run.results.macs, "params": run.results.params}
    assert {k: osnas.profile(run.path, runs=0)[k] for k in expected} == expected
    for target in (run.path, run.path / artifacts.ARCHITECTURE):
        code, out, err = osnas_in_process(monkeypatch, capsys, "profile", "--arch", str(target), "--json",
                                          "--runs", "1")
        assert code == 0, err
        assert {k: json.loads(out)[k] for k in expected} == expected
    # the run's shape is only a default: an explicit size wins
    assert osnas.profile(run.path, input_size=16, runs=0)["macs"] > expected["macs"]


def test_profile_of_an_older_architecture_file_takes_the_run_config(run, tmp_path, monkeypatch, capsys):
    old = tmp_path / "old-run"
    old.mkdir()
    (old / artifacts.CONFIG).write_text((run.path / artifacts.CONFIG).read_text())
    record = json.loads((run.path / artifacts.ARCHITECTURE).read_text())
    for key in ("format", "in_channels", "num_outputs", "space_options"):
        del record[key]
    (old / artifacts.ARCHITECTURE).write_text(json.dumps(record))
    code, out, err = osnas_in_process(monkeypatch, capsys, "profile", "--arch", str(old), "--json", "--runs", "1")
    assert code == 0, err
    assert json.loads(out)["macs"] == run.results.macs and json.loads(out)["params"] == run.results.params


@pytest.mark.parametrize("content, message", [
    ({"indices": [0] * 21}, "missing required key 'space'"),
    ({"space": "proxylessnas", "indices": [0.9] * 21}, "'indices' must be a list of integers"),
    ({"space": "proxylessnas", "indices": ["1"] * 21}, "'indices' must be a list of integers"),
    ({"space": "proxylessnas", "indices": [True] * 21}, "'indices' must be a list of integers"),
    ({"space": "proxylessnas", "indices": [10**30] + [0] * 20}, "key 'indices.0': input should be less than"),
    ('{"space": "proxylessnas", "indices": [NaN]}', "'indices' must be a list of integers"),
    ('{"space": "proxylessnas", "indices": [0], "score": NaN}', "key 'score'"),
    ({"space": "proxylessnas", "indices": [0] * 21, "input_size": -3}, "key 'input_size'"),
    ({"space": "spos", "indices": [0] * 20}, "architecture is for space 'spos', not 'proxylessnas'"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_architecture_file_is_one_clear_error(monkeypatch, capsys, tmp_path, content, message):
    path = tmp_path / "architecture.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "-s", "proxylessnas", "--arch", str(path),
                                    "--input-size", "32", "--runs", "1")
    assert code == 2 and message in err and str(path) in err and "Traceback" not in err


def test_directory_without_architecture_is_one_clear_error(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "architecture.json"
    folder.mkdir()
    code, _, err = osnas_in_process(monkeypatch, capsys, "profile", "--arch", str(folder), "--runs", "1")
    assert code == 2 and f"{folder} is a directory without architecture.json" in err
    (tmp_path / artifacts.RESULTS).mkdir()
    with pytest.raises(OsnasError, match="is a directory; expected a results.json"):
        artifacts.read_results(tmp_path)


def test_report_of_a_malformed_results_file(monkeypatch, capsys, tmp_path):
    (tmp_path / artifacts.CONFIG).write_text("seed: 0\n")
    (tmp_path / artifacts.RESULTS).write_text('{"test": 5}')
    code, _, err = osnas_in_process(monkeypatch, capsys, "report", str(tmp_path))
    assert code == 2 and "Traceback" not in err
    assert str(tmp_path / artifacts.RESULTS) in err and "key 'test'" in err and "missing required key 'macs'" in err


def test_build_space_list_components_and_overrides():
    space = osnas.build_space("spos", input_size=32, num_outputs=10, width_mult=0.25)
    assert space.definition.num_layers == 20 and space.definition.in_channels == 3
    assert space.child("spos_block")(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(OsnasError, match="search_space.depth"):
        osnas.build_space("spos", depth=3)
    listed = osnas.list_components()
    assert "proxylessnas" in listed["search_space"] and "evolution" in listed["search_strategy"]
    assert osnas.list_components("criterion") == {"criterion": listed["criterion"]}
    with pytest.raises(OsnasError, match="unknown component kind 'criterions'"):
        osnas.list_components("criterions")
    items = osnas.api.override_items({"supernet": {"epochs": 3, "optimizer": {"lr": 1e-5}}, "final.epochs": 2,
                                      "output.name": "007"})
    config = osnas.api.make_config(str(ROOT / "configs" / "quickstart.yaml"), supernet={"epochs": 3},
                                   **{"final.epochs": 2, "output.name": "007"})
    assert items[:2] == ["supernet.epochs=3", "supernet.optimizer.lr=1.0e-05"]
    assert (config.supernet.epochs, config.final.epochs, config.output.name) == (3, 2, "007")


def test_import_osnas_does_not_import_torch():
    code = "import sys, osnas; assert 'torch' not in sys.modules; osnas.list_components; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=osnas_env(), cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
