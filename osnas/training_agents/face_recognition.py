"""Face recognition: the network outputs an embedding; candidates are selected on pair verification accuracy.

Training uses an embedding criterion (``arcface``, ``cosface`` or ``triplet``) on
identity-labelled batches. Evaluation reads two batch kinds, told apart by the
target dtype:

- pair batches ``(cat([a, b]), same)`` with ``same`` a bool tensor of B flags and
  2B images (LFW pairs; contiguous chunks of the pair order are the folds);
- identity batches ``(images, identity)`` with int targets: the agent forms every
  same-identity pair in the batch and as many different-identity pairs, drawn with
  a fixed seed, so every candidate is scored on the same pairs.

Similarity is the cosine of the embeddings; accuracy is k-fold cross-validated
(``verification.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from osnas.config import ComponentOptions
from osnas.criteria.base import Criterion
from osnas.dataflows.base import Loader
from osnas.errors import ConfigError, DataError
from osnas.registry import register
from osnas.training import upcast
from osnas.training_agents.base import Forward, TrainingAgent, TrainingAgentOptions
from osnas.training_agents.verification import kfold_verification


class FaceRecognitionOptions(TrainingAgentOptions):
    embedding_dim: PositiveInt = 128
    folds: int = Field(10, ge=2)


def identity_pairs(embeddings: torch.Tensor, labels: torch.Tensor,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine scores and same flags of a balanced set of pairs inside one identity batch."""
    n = labels.shape[0]
    i, j = torch.triu_indices(n, n, 1, device=labels.device)
    equal = labels[i] == labels[j]
    positive = torch.stack([i[equal], j[equal]])
    negative = torch.stack([i[~equal], j[~equal]])
    k = min(positive.shape[1], negative.shape[1])

    def pick(pairs: torch.Tensor) -> torch.Tensor:
        return pairs[:, torch.randperm(pairs.shape[1], generator=generator)[:k].to(pairs.device)]

    pairs = torch.cat([pick(positive), pick(negative)], dim=1)
    scores = (embeddings[pairs[0]] * embeddings[pairs[1]]).sum(dim=1)
    same = torch.arange(2 * k, device=labels.device) < k
    return scores, same


@register("training_agent", "face_recognition")
class FaceRecognition(TrainingAgent):
    """Face embeddings (ArcFace/CosFace/triplet); selection on k-fold pair verification accuracy (LFW protocol)."""

    Options = FaceRecognitionOptions
    selection_metric = "verification_accuracy"
    expects = "embeddings"

    def __init__(self, options: ComponentOptions, criterion: Criterion, num_classes: int) -> None:
        super().__init__(options, criterion, num_classes)
        if criterion.expects != self.expects:
            raise ConfigError(f"criterion {criterion.name!r} needs "
                              "class logits; task face_recognition trains embeddings: use arcface, cosface or triplet")

    @classmethod
    def output_dim(cls, options: ComponentOptions, num_classes: int) -> int:
        return options.embedding_dim

    @torch.no_grad()
    def evaluate(self, forward: Forward, loader: Loader) -> dict[str, float]:
        generator = torch.Generator().manual_seed(0)
        scores, same, kinds = [], [], set()
        for x, y in loader:
            embeddings = F.normalize(upcast(forward(x)), dim=1)
            if y.dtype == torch.bool:
                b = y.shape[0]
                scores.append((embeddings[:b] * embeddings[b:]).sum(dim=1))
                same.append(y)
                kinds.add("pairs")
            else:
                s, flags = identity_pairs(embeddings, y, generator)
                scores.append(s)
                same.append(flags)
                kinds.add("identities")
        if len(kinds) > 1:
            raise DataError("an evaluation split mixes pair batches (bool targets) and identity batches (int targets)")
        if not scores:
            raise DataError("the evaluation split yielded no batches")
        all_scores = torch.cat(scores).cpu().numpy().astype(np.float64)
        all_same = torch.cat(same).cpu().numpy()
        return kfold_verification(all_scores, all_same, self.options.folds, contiguous=kinds == {"pairs"})
