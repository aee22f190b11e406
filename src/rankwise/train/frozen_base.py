"""Head-only training without re-running a frozen base: embed every text once, then train on a lookup table.

With ``freeze_base`` the base encoder's output for a text never changes, so computing it again at every step and
every dev evaluation is wasted work — on a CPU, nearly all of the work. :func:`lookup_model` embeds each distinct
training, dev and diagnostics text once (in eval mode, so without dropout) and returns a sentence-transformers
model ``[PrecomputedEmbeddings, head, Normalize]`` that *shares* the head module with the full model: training it
trains the full model's head, which is then saved whole (``[Transformer, Pooling, head, Normalize]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.input_module import InputModule
from torch import Tensor

from rankwise.errors import RankwiseError


class PrecomputedEmbeddings(InputModule):
    """An input module whose "tokenizer" maps a text to its row in a table of precomputed embeddings."""

    config_keys: ClassVar[list[str]] = []

    def __init__(self, texts: Sequence[str], vectors: Tensor) -> None:
        super().__init__()
        if len(texts) != len(vectors):
            raise RankwiseError(f"{len(texts)} texts but {len(vectors)} precomputed embeddings")
        self.texts = list(texts)
        self.rows = {text: row for row, text in enumerate(self.texts)}
        self.register_buffer("table", vectors.detach().float().clone())

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Tensor]:
        texts = [prompt + text for text in inputs] if prompt else list(inputs)
        missing = [text for text in texts if text not in self.rows]
        if missing:
            raise RankwiseError(f"{len(missing)} texts were not precomputed, e.g. {missing[0][:80]!r}")
        # shaped like token ids of one token per text, so the trainer's feature handling applies unchanged
        rows = torch.tensor([[self.rows[text]] for text in texts], dtype=torch.long)
        return {"input_ids": rows, "attention_mask": torch.ones_like(rows)}

    def forward(self, features: dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]:
        features["sentence_embedding"] = self.table[features["input_ids"][:, 0]]
        return features

    def get_embedding_dimension(self) -> int:
        return int(self.table.shape[1])

    def get_sentence_embedding_dimension(self) -> int:
        return self.get_embedding_dimension()

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Checkpoints keep the table (safetensors) and its texts (JSON), so a resumed run finds the same rows."""
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)
        (Path(output_path) / "precomputed_texts.json").write_text(json.dumps(self.texts), encoding="utf-8")

    @classmethod
    def load(cls, model_name_or_path: str, **kwargs: Any) -> PrecomputedEmbeddings:
        subfolder = kwargs.get("subfolder", "")
        path = Path(model_name_or_path) / subfolder / "precomputed_texts.json"
        texts = json.loads(path.read_text(encoding="utf-8"))
        state = cls.load_torch_weights(model_name_or_path, subfolder=subfolder)
        return cls(texts, state["table"])


def lookup_model(
    full: SentenceTransformer, head_index: int, texts: Sequence[str], batch_size: int = 64, show_progress: bool = True
) -> SentenceTransformer:
    """``[PrecomputedEmbeddings(texts), full's head, full's Normalize]``, sharing the head with ``full``."""
    distinct = list(dict.fromkeys(texts))
    base = SentenceTransformer(modules=list(full)[:head_index], device="cpu")
    base.eval()
    # numpy, not a tensor: encode runs under inference mode, whose tensors cannot be trained around or reloaded
    vectors = base.encode(distinct, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=show_progress)
    table = PrecomputedEmbeddings(distinct, torch.from_numpy(vectors))
    return SentenceTransformer(modules=[table, *list(full)[head_index:]], device="cpu")
