"""Criteria against values computed by hand (plain Python math on tiny examples)."""

from __future__ import annotations

import math

import pytest
import torch

from osnas.errors import ConfigError
from osnas.registry import REGISTRIES

LOGITS = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
TARGETS = [1, 0]


def build(name: str, num_classes: int, output_dim: int, **options):
    cls = REGISTRIES["criterion"].get(name)
    return cls(cls.Options(**options), num_classes, output_dim)


def softmax_row(row: list[float]) -> list[float]:
    total = sum(math.exp(v) for v in row)
    return [math.exp(v) / total for v in row]


def cross_entropy_by_hand(logits: list[list[float]], targets: list[int]) -> float:
    return sum(-math.log(softmax_row(row)[t]) for row, t in zip(logits, targets)) / len(targets)


def test_focal_matches_hand_computation():
    gamma, alpha = 2.0, [0.25, 0.5, 1.0]
    expected = 0.0
    for row, t in zip(LOGITS, TARGETS):
        p = softmax_row(row)[t]
        expected += -alpha[t] * (1 - p) ** gamma * math.log(p)
    expected /= 2
    loss = build("focal", 3, 3, gamma=gamma, alpha=alpha)(torch.tensor(LOGITS), torch.tensor(TARGETS))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    loss = build("focal", 3, 3, gamma=0.0)(torch.tensor(LOGITS), torch.tensor(TARGETS))
    assert loss.item() == pytest.approx(cross_entropy_by_hand(LOGITS, TARGETS), rel=1e-6)


def test_focal_alpha_must_list_every_class():
    with pytest.raises(ConfigError, match="2 class weights but the data has 3 classes"):
        build("focal", 3, 3, alpha=[1.0, 2.0])


def test_triplet_batch_hard_matches_hand_computation():
    x = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 1.0], [5.0, 5.0, 5.0]]
    labels = [0, 0, 1, 1, 2]  # label 2 has no positive: that anchor forms no triplet
    margin = 1.5
    losses = []
    for a in range(len(x)):
        pos = [math.dist(x[a], x[p]) for p in range(len(x)) if p != a and labels[p] == labels[a]]
        neg = [math.dist(x[a], x[n]) for n in range(len(x)) if labels[n] != labels[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    expected = sum(losses) / len(losses)
    assert expected > 0  # the example has active triplets
    crit = build("triplet", 3, 3, margin=margin, normalize=False)
    loss = crit(torch.tensor(x), torch.tensor(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_without_positives_is_zero_and_differentiable():
    x = torch.randn(3, 4, requires_grad=True)
    loss = build("triplet", 3, 4)(x, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


def cosines_by_hand(embeddings: list[list[float]], weight: list[list[float]]) -> list[list[float]]:
    def unit(v):
        n = math.sqrt(sum(c * c for c in v))
        return [c / n for c in v]

    return [[sum(a * b for a, b in zip(unit(e), unit(w))) for w in weight] for e in embeddings]


EMB = [[1.0, 2.0, 0.5], [-0.3, 0.4, 1.2]]
WEIGHT = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, -0.5, 1.0]]


def margin_head(name: str, **options):
    crit = build(name, 3, 3, **options)
    with torch.no_grad():
        crit.weight.copy_(torch.tensor(WEIGHT))
    return crit


def test_cosface_matches_hand_computation():
    s, m = 4.0, 0.35
    cos = cosines_by_hand(EMB, WEIGHT)
    logits = [[s * (c - m if j == t else c) for j, c in enumerate(row)] for row, t in zip(cos, TARGETS)]
    loss = margin_head("cosface", s=s, m=m)(torch.tensor(EMB), torch.tensor(TARGETS))
    assert loss.item() == pytest.approx(cross_entropy_by_hand(logits, TARGETS), rel=1e-5)


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_matches_hand_computation(easy_margin):
    s, m = 3.0, 0.5
    # row 2's target cosine is negative and, for the second target, theta + m passes pi
    emb = EMB + [[-1.0, -0.1, 0.0]]
    targets = TARGETS + [0]
    cos = cosines_by_hand(emb, WEIGHT)

    def target(c: float) -> float:
        theta = math.acos(c)
        if easy_margin:
            return math.cos(theta + m) if c > 0 else c
        return math.cos(theta + m) if theta + m < math.pi else c - m * math.sin(m)

    logits = [[s * (target(c) if j == t else c) for j, c in enumerate(row)] for row, t in zip(cos, targets)]
    loss = margin_head("arcface", s=s, m=m, easy_margin=easy_margin)(torch.tensor(emb), torch.tensor(targets))
    assert loss.item() == pytest.approx(cross_entropy_by_hand(logits, targets), rel=1e-5)


@pytest.mark.parametrize("name", ["cosface", "arcface"])
def test_margin_head_weights_train_and_reset(name):
    crit = build(name, 5, 8)
    assert tuple(crit.weight.shape) == (5, 8)
    before = crit.weight.detach().clone()
    loss = crit(torch.randn(4, 8), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert crit.weight.grad is not None and crit.weight.grad.abs().sum() > 0
    crit.reset_parameters()
    assert not torch.equal(before, crit.weight.detach())


def test_tasks_reject_criteria_of_the_wrong_kind():
    agents = REGISTRIES["training_agent"]
    face = agents.get("face_recognition")
    classification = agents.get("classification")
    with pytest.raises(ConfigError, match="face_recognition trains embeddings"):
        face(face.Options(), build("cross_entropy", 10, 128), 10)
    with pytest.raises(ConfigError, match="needs class logits"):
        classification(classification.Options(), build("arcface", 10, 10), 10)


def test_classification_evaluate_by_hand():
    cls = REGISTRIES["training_agent"].get("classification")
    agent = cls(cls.Options(), build("cross_entropy", 6, 6), 6)
    logits = [[6.0, 5, 4, 3, 2, 1], [0, 1, 2, 3, 4, 5], [1, 0.5, 0.4, 0.3, 0.2, 0.1]]
    targets = [0, 1, 5]  # ranks 1st, 5th and 6th
    batches = [(torch.tensor(logits[:2]), torch.tensor(targets[:2])), (torch.tensor(logits[2:]), torch.tensor(targets[2:]))]
    metrics = agent.evaluate(lambda x: x, batches)
    assert metrics["top1"] == pytest.approx(100 / 3) and metrics["top5"] == pytest.approx(200 / 3)
    assert metrics["loss"] == pytest.approx(cross_entropy_by_hand(logits, targets), rel=1e-6)
