"""Losses and diagnostics for dense-encoder training: ranking loss + isotropy regulariser, isotropy statistics.

The regulariser is sentence-transformers' global orthogonal regularisation (GOR: the squared mean and the second
moment of in-batch cosine similarities within each column), added to ``MultipleNegativesRankingLoss`` from the
same forward pass — or, for the cached (GradCache) variant, added to the cached embedding gradients.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    GlobalOrthogonalRegularizationLoss,
    MultipleNegativesRankingLoss,
)
from torch import Tensor, nn

from rankwise.config.train_retriever import RetrieverTrainConfig
from rankwise.errors import RankwiseError


def isotropy_stats(embeddings: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine (self-pairs excluded) and effective rank of the covariance (Roy & Vetterli, 2007).

    Effective rank = exp(entropy of the normalised eigenvalues of the covariance): the dimension a space would
    have if its variance were spread evenly; an anisotropic space (all vectors in a narrow cone) scores low.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise RankwiseError(f"isotropy needs at least 2 row vectors, got shape {x.shape}")
    x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    n = len(x)
    total = x.sum(axis=0)
    mean_cos = (float(total @ total) - n) / (n * (n - 1))
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0.0, None)
    p = eigenvalues / eigenvalues.sum()
    entropy = -float(np.sum(p[p > 0] * np.log(p[p > 0])))
    return {"mean_pairwise_cosine": mean_cos, "effective_rank": float(np.exp(entropy)), "dim": int(x.shape[1])}


class IsotropyRegularisedLoss(nn.Module):
    """``MultipleNegativesRankingLoss`` + ``weight`` x global orthogonal regularisation, from one forward pass.

    Returns the parts as a dict, so the Trainer logs them separately (``ranking``, ``gor_mean``,
    ``gor_second_moment``) and optimises their sum.
    """

    def __init__(self, model: SentenceTransformer, ranking: MultipleNegativesRankingLoss, weight: float) -> None:
        super().__init__()
        self.model = model
        self.ranking = ranking
        self.regulariser = GlobalOrthogonalRegularizationLoss(model)
        self.weight = weight

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> dict:
        embeddings = embed_columns(self.model, sentence_features)
        parts = {"ranking": self.ranking.compute_loss_from_embeddings(embeddings, labels)}
        for name, value in self.regulariser.compute_loss_from_embeddings(embeddings).items():
            parts[name] = self.weight * value
        return parts


class CachedIsotropyRegularisedLoss(CachedMultipleNegativesRankingLoss):
    """The cached (GradCache) variant: the regulariser's gradient joins the cached embedding gradients."""

    def __init__(self, model: SentenceTransformer, weight: float, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.regulariser = GlobalOrthogonalRegularizationLoss(model)
        self.isotropy_weight = weight

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False):
        loss = super().calculate_loss(reps, labels, with_backward=with_backward)
        columns = [torch.cat(column) for column in reps]
        parts = self.regulariser.compute_loss_from_embeddings(columns)
        penalty = self.isotropy_weight * torch.stack(list(parts.values())).sum()
        if with_backward:
            penalty.backward()  # adds to rep.grad, which is the cache the second pass replays
            penalty = penalty.detach()
        return loss + penalty


def build_loss(model: SentenceTransformer, config: RetrieverTrainConfig, distributed: bool = False) -> nn.Module:
    """The ranking loss (and regulariser) of ``config``; ``distributed``: running under DDP."""
    options = {"scale": config.scale, "gather_across_devices": config.gather_across_devices and distributed}
    if config.loss == "cached_mnrl":
        if config.isotropy_weight > 0:
            return CachedIsotropyRegularisedLoss(
                model, config.isotropy_weight, mini_batch_size=config.mini_batch_size, **options
            )
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **options)
    ranking = MultipleNegativesRankingLoss(model, **options)
    if config.isotropy_weight > 0:
        return IsotropyRegularisedLoss(model, ranking, config.isotropy_weight)
    return ranking
