"""The supernet store: keyed entries written whole, one winner when processes race, listing, pruning; and
honest latency figures (spread, load warning, "not measured")."""

import json
import threading
import time

import torch

from osnas.config import load_config
from osnas.profiling import LatencyStats, describe_latency, latency_fields, measure_latency
from osnas.store import SupernetStore, key_material, supernet_key
from tests.conftest import variant
from tests.datasets import run_cli


def stored_checkpoint(tmp_path, name="run"):
    path = tmp_path / name / "supernet.pt"
    path.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.ones(2)}}, path)
    return path


def test_store_put_lookup_and_racing_writers(tiny_config, tmp_path):
    config = load_config(tiny_config)
    store = SupernetStore(tmp_path / "store")
    assert store.lookup(config) is None
    checkpoint = stored_checkpoint(tmp_path)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(store.put(config, checkpoint, f"run{i}", 1.5)))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False, False, False, True]  # one entry, no error for the losers
    entry = store.lookup(config)
    assert entry is not None and entry.key == supernet_key(config)
    assert entry.info["material"] == key_material(config) and entry.info["seconds"] == 1.5
    assert torch.load(entry.path / "supernet.pt", weights_only=True)["model"]["w"].sum() == 2
    assert [p.name for p in store.root.iterdir()] == [entry.key]  # no temporary left behind
    # another seed is another key; another osnas version would be too
    assert store.lookup(load_config(tiny_config, ["seed=1"])) is None
    assert key_material(config)["versions"]["torch"] == torch.__version__
    # an entry whose description is damaged counts as absent (the next run trains again)
    (entry.path / "entry.json").write_text("{")
    assert store.lookup(config) is None


def test_store_list_and_prune_commands(tiny_config, tmp_path, capsys):
    store = SupernetStore(tmp_path / "store")
    old, new = load_config(tiny_config), load_config(tiny_config, ["seed=1"])
    assert store.put(old, stored_checkpoint(tmp_path, "a"), "runs/a", 3.0)
    assert store.put(new, stored_checkpoint(tmp_path, "b"), "runs/b", 3.0)
    info = json.loads((store.root / supernet_key(old) / "entry.json").read_text())
    info["created"] = time.time() - 10 * 86400
    (store.root / supernet_key(old) / "entry.json").write_text(json.dumps(info))

    code, out, err = run_cli(capsys, "store", "list", "--dir", str(store.root))
    assert code == 0, err
    assert supernet_key(old) in out and supernet_key(new) in out and "runs/a" in out
    assert "(2 entries)" in " ".join(out.split())
    code, out, err = run_cli(capsys, "store", "prune", "--dir", str(store.root))
    assert code == 2 and "exactly one of --older-than DAYS or --all" in err
    code, out, err = run_cli(capsys, "store", "prune", "--dir", str(store.root), "--older-than", "5")
    assert code == 0 and "removed 1 supernet(s)" in out and supernet_key(old) in out
    assert [e.key for e in store.entries()] == [supernet_key(new)]
    code, out, err = run_cli(capsys, "store", "prune", "--dir", str(store.root), "--all")
    assert code == 0 and store.entries() == []


def test_search_reuses_the_stored_supernet_and_says_so(tiny_config, tmp_path, capsys):
    config = variant(tiny_config, "stored", store={"enabled": True, "dir": str(tmp_path / "store")},
                     dataflow={"name": "digits", "input_size": 8, "batch_size": 64, "val_fraction": 0.5,
                               "test_fraction": 0.8})
    code, first, err = run_cli(capsys, "search", "--config", str(config), "--quiet", "--set", "output.name=a")
    assert code == 0, err
    code, second, err = run_cli(capsys, "search", "--config", str(config), "--quiet", "--set", "output.name=b",
                                "--set", "final.epochs=2")
    assert code == 0, err
    key = supernet_key(load_config(config))
    run_b = tmp_path / "runs" / second.strip().split("/")[-1]
    assert f"supernet: reusing {key} from the store" in (run_b / "log.txt").read_text()
    source = json.loads((run_b / "supernet_source.json").read_text())
    assert source["reused"] and source["trained_by"].endswith(first.strip().split("/")[-1])
    assert not any(json.loads(line)["phase"] == "supernet" for line in (run_b / "metrics.jsonl").read_text().splitlines())


def test_latency_spread_load_warning_and_not_measured():
    stats = measure_latency(torch.nn.Linear(8, 8), (1, 8), runs=12)
    assert stats.runs == 12 and stats.median_ms > 0 and stats.iqr_ms >= 0 and stats.std_ms >= 0
    quiet = LatencyStats(2.0, 0.1, 0.1, 10, load=0.2, cpus=4)
    assert quiet.warning is None
    assert "machine loaded (load average 3.0 on 4 CPUs)" in LatencyStats(2.0, 0.1, 0.1, 10, 3.0, 4).warning
    assert "timings spread widely" in LatencyStats(2.0, 1.0, 0.8, 10, 0.2, 4).warning
    fields = latency_fields(torch.nn.Linear(8, 8), (1, 8), torch.device("cpu"), measure=False, runs=10)
    assert fields == {"latency_ms": None, "latency": "not measured"}
    assert describe_latency(fields).startswith("not measured")
    shown = describe_latency({"latency_ms": 2.0, "latency": {**quiet.to_dict(), "warning": "machine loaded"}})
    assert shown == "2.00 ms (IQR 0.10 ms over 10 runs); warning: machine loaded"
