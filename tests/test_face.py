"""Face recognition: LFW pairs, the CASIA-style identity dataflow, k-fold verification, an end-to-end search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from osnas.dataflows.lfw import read_pairs
from osnas.dataflows.splits import split_by_class
from osnas.errors import DataError
from osnas.registry import REGISTRIES
from osnas.training_agents.verification import best_threshold, kfold_verification
from tests.datasets import run_cli, write_class_folders, write_lfw

CPU = torch.device("cpu")
SAME = [("ann", 1, 2), ("bob", 1, 3)]
DIFFERENT = [("ann", 1, "bob", 2), ("cid", 1, "ann", 3)]


@pytest.fixture
def face_data(tmp_path):
    """4 training identities of 6 images, and an LFW folder with 2 folds of 2 same + 2 different pairs."""
    write_class_folders(tmp_path / "casia", {f"{i:07d}": 6 for i in range(4)}, size=(24, 24))
    write_lfw(tmp_path / "lfw", {"ann": 3, "bob": 3, "cid": 1}, SAME, DIFFERENT, folds=2)
    return tmp_path


def casia(face_data, seed: int = 0, **options):
    cls = REGISTRIES["dataflow"].get("casia_webface")
    defaults = dict(root=str(face_data / "casia"), lfw_root=str(face_data / "lfw"), input_size=16, batch_size=4,
                    val_fraction=0.3333, num_workers=0)
    return cls(cls.Options(**(defaults | options)), seed, CPU)


# ----------------------------------------------------------------------------- LFW pairs


def test_lfw_pairs_are_read_in_file_order(face_data):
    pairs = read_pairs(face_data / "lfw")
    assert pairs.folds == 2 and pairs.same.tolist() == [True, True, False, False] * 2
    assert [p.decode() for p in pairs.rel[0]] == ["ann/ann_0001.jpg", "ann/ann_0002.jpg"]
    assert [p.decode() for p in pairs.rel[3]] == ["cid/cid_0001.jpg", "ann/ann_0003.jpg"]


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("bob 1 3", "bob 1 9"), r"pairs.txt:3 names .*bob_0009.jpg, which does not exist"),
    (lambda text: text.replace("bob 1 3", "bob 1"), r"pairs.txt:3: expected 'name idx1 idx2'"),
    (lambda text: text.replace("bob 1 3", "bob one 3"), r"pairs.txt:3: expected"),
    (lambda text: text.replace("2 2\n", "10 300\n"), "announces 6000 pairs but the file lists 8"),
    (lambda text: text.replace("2 2\n", "folds\n"), r"pairs.txt:1: header must be"),
])
def test_malformed_pairs_file_names_file_and_line(face_data, edit, message):
    pairs = face_data / "lfw" / "pairs.txt"
    pairs.write_text(edit(pairs.read_text()))
    with pytest.raises(DataError, match=message):
        read_pairs(face_data / "lfw")


def test_missing_pairs_file_says_where_to_put_it(face_data):
    (face_data / "lfw" / "pairs.txt").rename(face_data / "elsewhere.txt")
    with pytest.raises(DataError, match="put pairs.txt at .*lfw/pairs.txt or .*/pairs.txt"):
        read_pairs(face_data / "lfw")
    assert read_pairs(face_data / "lfw", str(face_data / "elsewhere.txt")).same.size == 8


# ----------------------------------------------------------------------------- the dataflow


def test_casia_search_val_holds_out_whole_identities(face_data):
    flow = casia(face_data)
    assert flow.num_classes == 4 and flow.in_channels == 3
    summary = flow.summary()
    assert summary["test"] == {"same": 4, "different": 4}
    assert sum(summary["train"].values()) == 24
    train_idx, val_idx = set(flow.search_train_idx), set(flow.search_val_idx)
    assert not train_idx & val_idx and len(train_idx | val_idx) == 24
    # the search selects on people the supernet never trained on, as LFW tests on unseen people
    assert summary["search_val"] == {name: 6 for name in summary["search_val"]} and len(summary["search_val"]) == 2
    assert not set(summary["search_val"]) & set(summary["search_train"])
    _, val = flow.search_split()
    labels = torch.cat([y for _, y in val]).tolist()  # each held-out identity's images together
    assert len(labels) == 12 and labels[:6] == [labels[0]] * 6 and labels[6:] == [labels[6]] * 6
    held = {seed: tuple(sorted(casia(face_data, seed=seed).summary()["search_val"])) for seed in range(6)}
    assert len(set(held.values())) > 1  # seeded: other seeds hold out other identities


def test_split_by_class_sizes_and_refusals():
    labels = np.repeat(np.arange(10), [1, 5, 5, 5, 5, 5, 5, 5, 5, 5])
    keep, held = split_by_class(labels, 0.2, seed=3)
    assert len(held) == 10 and not set(labels[keep]) & set(labels[held]) and 0 not in labels[held]
    _, held = split_by_class(labels, 0.01, seed=3)  # two identities at least: different-identity pairs
    assert len(set(labels[held])) == 2
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(labels.size))
    _, held = split_by_class(labels, 0.99, seed=3)  # at least one identity stays for training
    assert len(set(labels[held])) == 9
    with pytest.raises(DataError, match="at least 3 identities, 2 of them with 2 or more images; it has 2"):
        split_by_class(np.repeat([0, 1], 4), 0.2, seed=0)
    with pytest.raises(DataError, match="it has 5 identities, 0 with 2 or more"):
        split_by_class(np.arange(5), 0.2, seed=0)  # one image each: no held-out identity could form a pair


def test_casia_test_split_is_lfw_pair_batches(face_data):
    _, test = casia(face_data).final_split()
    x, y = next(iter(test))
    assert x.shape == (8, 3, 16, 16) and y.dtype == torch.bool and y.tolist() == [True, True, False, False]
    assert x.min() >= -1.0 and x.max() <= 1.0
    # a-images first, then b-images: pair 0 is ann/ann (one colour), pair 3 is cid/ann (two colours)
    assert (x[0] - x[4]).abs().mean() < 0.25 < (x[3] - x[7]).abs().mean()
    assert test.num_samples == 8 and len(test) == 2


def test_identity_batches_hold_groups_of_one_identity(face_data):
    flow = casia(face_data, samples_per_identity=2, batch_size=4, val_fraction=0.2)
    train, _ = flow.search_split()
    for _, y in train:
        assert y.shape == (4,) and y[0] == y[1] and y[2] == y[3]


def test_samples_per_identity_must_divide_the_batch():
    with pytest.raises(ValueError, match="must be 0 .* or at least 2 and divide batch_size"):
        REGISTRIES["dataflow"].get("casia_webface").Options(samples_per_identity=3, batch_size=8)


def test_identity_folder_without_images_is_an_error(face_data):
    (face_data / "casia" / "empty_identity").mkdir()
    with pytest.raises(DataError, match="class folder .*empty_identity holds no images"):
        casia(face_data)


# ----------------------------------------------------------------------------- verification


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = np.round(rng.uniform(-1, 1, 15), 1)  # rounding makes ties
        same = rng.random(15) < 0.5
        values = sorted(set(scores.tolist()))
        candidates = [values[0] - 1] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1]]
        best = max(sum((s > t) == l for s, l in zip(scores, same)) for t in candidates) / 15
        threshold, accuracy = best_threshold(scores, same)
        assert accuracy == pytest.approx(best)
        assert np.mean((scores > threshold) == same) == pytest.approx(best)


def test_kfold_verification_by_hand():
    # fold 1 tested with fold 2's threshold 0.45 -> 0.6 (different) is misread: 3/4; fold 2 with 0.65: 0.5 misread
    scores = np.array([0.9, 0.2, 0.6, 0.7, 0.8, 0.3, 0.5, 0.4])
    same = np.array([True, False, False, True, True, False, True, False])
    result = kfold_verification(scores, same, folds=2, contiguous=True)
    assert result["verification_accuracy"] == pytest.approx(75.0)
    assert result["verification_std"] == pytest.approx(0.0)
    assert result["threshold"] == pytest.approx(0.55)
    assert result["pairs"] == 8


def face_agent(folds: int = 2):
    cls = REGISTRIES["training_agent"].get("face_recognition")
    criterion = REGISTRIES["criterion"].get("arcface")
    return cls(cls.Options(embedding_dim=2, folds=folds), criterion(criterion.Options(), 3, 2), 3)


def test_face_agent_scores_pair_batches_and_identity_batches():
    agent = face_agent()
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.05], [0.1, 1.0], [0.0, 1.0], [1.0, 0.0]])
    same = torch.tensor([True, True, False, False])
    pairs = [(torch.cat([a, b]), same), (torch.cat([b, a]), same)]
    metrics = agent.evaluate(lambda x: x, pairs)
    assert metrics["verification_accuracy"] == 100.0 and metrics["pairs"] == 8
    # identity batch: 3 same-identity pairs ({0,1}, {0,2}, {1,2} of identity 0, {3,4} of 1) -> 4 positives
    x = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    metrics = agent.evaluate(lambda x: x, [(x, y)])
    assert metrics["pairs"] == 8 and metrics["verification_accuracy"] == 100.0
    with pytest.raises(DataError, match="mixes pair batches"):
        agent.evaluate(lambda x: x, pairs + [(x, y)])


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("space", ["mobilefacenet", "proxylessnas"])
def test_face_search_end_to_end(face_data, space, capsys):
    config = face_data / "face.yaml"
    config.write_text(f"""
seed: 0
device: cpu
task: {{name: face_recognition, embedding_dim: 16, folds: 2}}
criterion: {{name: arcface, s: 16.0, m: 0.2}}
dataflow: {{name: casia_webface, root: {face_data / 'casia'}, lfw_root: {face_data / 'lfw'}, input_size: 16,
           batch_size: 8, val_fraction: 0.3333, num_workers: 0}}
search_space: {{name: {space}, width_mult: 0.25}}
search_strategy: {{name: evolution, population: 2, generations: 1, top_k: 1}}
supernet: {{epochs: 1}}
final: {{epochs: 1}}
evaluation: {{bn_batches: 1, val_batches: 1}}
lookup_table: {{latency: false, cache_dir: {face_data / 'luts'}}}
logging: {{progress: false}}
output: {{dir: {face_data / 'runs'}, name: face}}
store: {{enabled: false}}
""")
    code, out, err = run_cli(capsys, "search", "--config", str(config), "--quiet")
    assert code == 0, err
    run_dir = next((face_data / "runs").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    test = results["test"]
    assert test["pairs"] == 8 and 0.0 <= test["verification_accuracy"] <= 100.0
    assert results["test_verification_accuracy"] == test["verification_accuracy"]
    searched = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r["phase"] == "search" for r in searched)
    # the exported network outputs the embedding: the margin head's weights are not part of it
    state = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    last = [v for k, v in state.items() if k.endswith("weight")][-1]
    assert last.shape[0] == 16 and not any(v.shape == (4, 16) for v in state.values())
