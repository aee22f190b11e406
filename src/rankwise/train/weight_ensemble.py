"""WiSE-FT for the dense encoder: the trained weights interpolated with the ones training started from.

Wortsman et al. (2022), "Robust fine-tuning of zero-shot models": ``theta(alpha) = (1 - alpha) * theta_0 +
alpha * theta_1`` keeps most of fine-tuning's in-domain gain at alpha < 1 while losing less of the base model's
robustness on other domains (a SciFact-trained head loses to the untrained MiniLM on Cranfield). With a frozen base
only the head moves (``identity`` init: alpha 0 *is* the base model). No library exposes this for
sentence-transformers, and it is a dozen lines over the parameters, so it is written here.

``alpha`` is picked on the dev split, never on a test or transfer set: ``auto`` takes the *smallest* alpha whose
dev nDCG@10 is within ``tolerance`` of the best on the grid (the most conservative model dev cannot tell from the
best one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rankwise.train.dev import TENTHS as GRID


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s trainable parameters (the ones training can move)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def interpolate(model: nn.Module, start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> None:
    """Set ``model``'s parameters named in ``start`` to ``(1 - alpha) * start + alpha * end`` in place."""
    parameters = dict(model.named_parameters())
    for name, first in start.items():
        parameters[name].copy_(torch.lerp(first, end[name], alpha))


def pick_alpha(scores: dict[float, float], tolerance: float) -> float:
    """The smallest alpha whose score is within ``tolerance`` of the best score (ties: the smaller alpha)."""
    best = max(scores.values())
    return min(alpha for alpha, score in scores.items() if score >= best - tolerance)


def apply_wise_ft(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    setting: float | str,
    tolerance: float,
    score: Callable[[], float] | None,
) -> dict:
    """Interpolate ``model`` (trained, in place) towards ``start``; returns what was done, for the summary.

    ``setting`` is an alpha in [0, 1] or ``"auto"`` (needs ``score``, the dev metric of the model as it stands).
    With ``score``, every alpha of the grid is scored on dev and reported; ``model`` ends at the chosen alpha.
    """
    end = snapshot(model)
    if set(end) != set(start):
        raise ValueError("the trainable parameters changed during training; cannot interpolate")
    curve: dict[float, float] = {}
    if score is not None:
        for alpha in GRID:
            interpolate(model, start, end, alpha)
            curve[alpha] = float(score())
    if setting == "auto":
        if not curve:
            raise ValueError("wise_ft: auto picks alpha on the dev split; this run holds none (dev_queries: 0)")
        alpha = pick_alpha(curve, tolerance)
        rule = f"smallest alpha with dev nDCG@10 within {tolerance} of the best"
    else:
        alpha, rule = float(setting), "set in the config"
    interpolate(model, start, end, alpha)
    return {"alpha": alpha, "rule": rule, "dev_ndcg@10": {str(a): round(v, 4) for a, v in curve.items()}}
