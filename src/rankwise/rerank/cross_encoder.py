"""Cross-encoder reranking with a sentence-transformers ``CrossEncoder`` (any hub name or local path).

Scores equal ``CrossEncoder.predict`` (same tokenisation, same activation) but the batching is ours:
every pair is tokenised once up front, pairs are sorted by their *token* count (``predict`` sorts by character
count), and a batch holds as many pairs as fit a token budget (``max_tokens``), so short pairs run in large
batches and long ones in small, with almost no padding. ``benchmarks/rerank.py`` measures the gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rankwise.errors import RankwiseError
from rankwise.rerank.base import Reranker, progress

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

# A hub cross-encoder for real use; no package bundles a trained one, so offline users pass a trained path
# (``rankwise train reranker`` writes one).
DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
# Written next to the weights by ``rankwise train reranker``: the first-stage weight it picked on its dev split,
# read back by ``rankwise rerank --interpolate auto``.
TRAINED_SETTINGS = "rankwise_rerank.json"


def trained_interpolation(model: str) -> float:
    """The first-stage weight ``rankwise train reranker`` picked for ``model`` (a trained model directory)."""
    import json
    from pathlib import Path

    path = Path(model) / TRAINED_SETTINGS
    if not path.is_file():
        raise RankwiseError(
            f"--interpolate auto needs a model written by `rankwise train reranker` ({path} does not exist); "
            "pass a weight in [0, 1] instead"
        )
    try:
        weight = json.loads(path.read_text(encoding="utf-8"))["first_stage_weight"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RankwiseError(f"{path}: no readable 'first_stage_weight' ({exc})") from exc
    if not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise RankwiseError(f"{path}: 'first_stage_weight' must be a number in [0, 1], not {weight!r}")
    return float(weight)


def load_cross_encoder(
    model: str,
    max_length: int | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    num_labels: int | None = None,
) -> CrossEncoder:
    """Load a ``CrossEncoder`` by hub name or path (``"minilm"`` = the bundled MiniLM body, see models.py)."""
    from sentence_transformers import CrossEncoder

    from rankwise.models import resolve_model

    path, _ = resolve_model(model)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if max_length is not None:
        kwargs["max_length"] = max_length
    if device is not None:
        kwargs["device"] = device
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    try:
        return CrossEncoder(path, **kwargs)
    except OSError as exc:
        raise RankwiseError(f"cannot load cross-encoder {model!r}: {exc}") from exc


class CrossEncoderReranker(Reranker):
    """Rerank with a cross-encoder; ``model`` is a name, a path or a loaded ``CrossEncoder``.

    ``max_length`` caps query + passage tokens (default: the model's own limit). ``batch_size`` caps pairs per
    forward pass; ``max_tokens`` caps padded tokens per forward pass (the length-bucketing budget).
    """

    def __init__(
        self,
        model: str | CrossEncoder = DEFAULT_MODEL,
        max_length: int | None = None,
        batch_size: int = 128,
        max_tokens: int = 16384,
        device: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
    ) -> None:
        if batch_size < 1 or max_tokens < 1:
            raise RankwiseError(f"batch_size and max_tokens must be positive, got {batch_size}, {max_tokens}")
        if isinstance(model, str):
            model = load_cross_encoder(model, max_length, device, trust_remote_code)
        self.model = model
        self.max_length = max_length or model.max_seq_length or model.tokenizer.model_max_length
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.show_progress = show_progress

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import numpy as np
        import torch

        if not pairs:
            return []
        tokenizer = self.model.tokenizer
        encoded = tokenizer(
            [query for query, _ in pairs],
            [passage for _, passage in pairs],
            truncation="longest_first",
            max_length=self.max_length,
        )
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows up at once
        scores = np.empty(len(pairs), dtype=np.float64)
        hf_model: Any = self.model.model  # the transformers model under the sentence-transformers wrapper
        if hf_model is None:
            raise RankwiseError("this CrossEncoder has no underlying transformers model to run")
        activation = self.model.activation_fn
        was_training = hf_model.training
        hf_model.eval()
        try:
            with torch.inference_mode(), progress(len(pairs), self.show_progress) as advance:
                start = 0
                while start < len(order):
                    size = max(1, min(self.batch_size, self.max_tokens // int(lengths[order[start]])))
                    batch = order[start : start + size]
                    features = tokenizer.pad(
                        {key: [values[i] for i in batch] for key, values in encoded.items()},
                        return_tensors="pt",
                    ).to(hf_model.device)
                    logits = hf_model(**features).logits.float()
                    if activation is not None:
                        logits = activation(logits)
                    scores[batch] = logits[:, 0].cpu().numpy()
                    start += size
                    advance(len(batch))
        finally:
            hf_model.train(was_training)
        return scores.tolist()
