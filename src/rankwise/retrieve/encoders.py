"""The sentence encoder a dense retriever runs, in the precision it asks for (:mod:`rankwise.config.precision`).

- ``fp32``: the ``SentenceTransformer`` itself.
- ``bf16``: the model cast to bfloat16; its vectors are turned into float32 and L2-normalised in float32 (a bf16
  norm is only good to ~3 digits).
- ``int8``: the model's whole forward (transformer, pooling, any dense layers, normalisation) exported to ONNX and
  quantized to int8 (:mod:`rankwise.config.onnx_int8`), run by onnxruntime; tokenisation (prompts, truncation) is
  still the model's own ``preprocess``. On the Ray engine each actor loads (and
  caches) its own.
- ``runtime: openvino`` (fp32 or bf16; what ``auto`` picks for bf16 on a CPU where the ``openvino`` extra is
  installed): the same whole forward converted to OpenVINO IR (:mod:`rankwise.config.openvino_ir`), cached, and
  run by OpenVINO's CPU plugin in the stage's precision.

Each encoder has the ``encode(texts, prompt=..., batch_size=..., normalize_embeddings=..., ...)`` that
:mod:`rankwise.retrieve.encode` and :class:`~rankwise.retrieve.dense.DenseRetriever` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankwise.config.models import resolve_path
from rankwise.errors import RankwiseError, loading_model


def unit_rows(rows: Any) -> np.ndarray:
    """``rows`` as contiguous float32, each scaled to unit L2 norm in float32 (zero rows stay zero)."""
    rows = np.array(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return np.ascontiguousarray(rows)


class Bf16SentenceEncoder:
    """A ``SentenceTransformer`` cast to bfloat16 whose vectors come back float32, normalised in float32."""

    def __init__(self, model: Any) -> None:
        import torch

        self.model = model.to(torch.bfloat16)

    def encode(self, texts: Sequence[str], normalize_embeddings: bool = False, **options: Any) -> np.ndarray:
        options.pop("convert_to_numpy", None)
        rows = self.model.encode(list(texts), normalize_embeddings=False, convert_to_numpy=True, **options)
        return unit_rows(rows) if normalize_embeddings else np.asarray(rows, dtype=np.float32)


def _export_inputs(model: Any) -> tuple[dict[str, Any], Any]:
    """One tokenised example batch (the tensors an export traces) and the forward to export: the model's whole
    ``sentence_embedding`` computation (transformer, pooling, any dense layers, normalisation)."""
    import torch

    example = {key: value for key, value in model.preprocess(["a sentence"]).items() if torch.is_tensor(value)}
    return example, lambda features: model(features)["sentence_embedding"]


class ExportedSentenceEncoder:
    """A ``SentenceTransformer``'s ``encode`` run by an exported forward (``session(features) -> vectors``).

    Texts are batched longest first (as ``encode`` does), ``batch_size`` at a time; tokenisation (prompts,
    truncation) is the model's own ``preprocess``.
    """

    label = "exported"
    instead = "use runtime torch"

    def __init__(self, model: Any, session: Any, names: set[str]) -> None:
        self.model = model
        self.session = session
        self.names = names

    def encode(
        self,
        texts: Sequence[str],
        prompt: str | None = None,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        show_progress_bar: bool = False,
        **options: Any,
    ) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows: np.ndarray | None = None
        for start in tqdm(range(0, len(texts), batch_size), desc="Batches", disable=not show_progress_bar):
            batch = order[start : start + batch_size]
            features = self.model.preprocess([texts[i] for i in batch], prompt=prompt or None)
            arrays = {key: value.numpy() for key, value in features.items() if torch.is_tensor(value)}
            if set(arrays) - self.names:
                raise RankwiseError(
                    f"{self.label}: this model's inputs {sorted(arrays)} differ from those it was exported with "
                    f"{sorted(self.names)} (a prompt that changes pooling?); {self.instead}"
                )
            vectors = self.session(arrays)
            if rows is None:
                rows = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            rows[batch] = vectors
        if rows is None:
            return np.empty((0, self.model.get_embedding_dimension() or 0), dtype=np.float32)
        return unit_rows(rows) if normalize_embeddings else rows


class Int8SentenceEncoder(ExportedSentenceEncoder):
    """int8: the forward exported to ONNX and quantized (see the module docstring), run by onnxruntime."""

    label = "precision int8"
    instead = "use precision fp32 or bf16"

    def __init__(self, model: Any, model_dir: str | None = None, cache_dir: str | Path | None = None) -> None:
        from rankwise.config.onnx_int8 import Int8Session, int8_model

        example, forward = _export_inputs(model)
        path = int8_model(
            model,
            forward,
            example,
            output="sentence_embedding",
            stage="dense",
            model_dir=model_dir,
            cache_dir=cache_dir,
        )
        super().__init__(model, Int8Session(path), set(example))


class OpenVinoSentenceEncoder(ExportedSentenceEncoder):
    """``runtime: openvino``: the forward converted to OpenVINO IR, run in ``precision`` (fp32 | bf16)."""

    label = "runtime openvino"

    def __init__(
        self, model: Any, precision: str, model_dir: str | None = None, cache_dir: str | Path | None = None
    ) -> None:
        from rankwise.config.openvino_ir import OpenVinoSession, openvino_model

        example, forward = _export_inputs(model)
        options = {"stage": "dense", "model_dir": model_dir, "cache_dir": cache_dir}
        path = openvino_model(model, forward, example, output="sentence_embedding", **options)
        super().__init__(model, OpenVinoSession(path, precision), set(example))


def load_sentence_encoder(
    model: str,
    precision: str,
    device: str | None = None,
    trust_remote_code: bool = False,
    int8_cache: str | Path | None = None,
    runtime: str = "torch",
    openvino_cache: str | Path | None = None,
) -> Any:
    """The encoder of ``model`` (a name or path) in ``precision`` (fp32 | bf16 | int8) on ``runtime`` (torch |
    openvino), both already resolved."""
    from sentence_transformers import SentenceTransformer

    path = resolve_path(model)
    with loading_model(model):
        encoder = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
    if runtime == "openvino":
        return OpenVinoSentenceEncoder(encoder, precision, path, openvino_cache)
    if precision == "bf16":
        return Bf16SentenceEncoder(encoder)
    if precision == "int8":
        return Int8SentenceEncoder(encoder, path, int8_cache)
    return encoder
