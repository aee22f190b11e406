"""The RankRAG preset: ONE loaded causal LM used as both the P(True) reranker and the generator.

The model is loaded once (a merged RankRAG checkpoint, a LoRA adapter directory, a hub name or ``"smollm2"``;
see :func:`rankwise.config.models.load_causal_lm`) and the same object is handed to
:class:`~rankwise.rerank.llm.LLMReranker` (scores the retrieved top-N by P("True")) and to
:meth:`LocalGenerator.from_pretrained_objects <rankwise.generate.local.LocalGenerator.from_pretrained_objects>`
(answers from the reranked top-k). Defaults match the RankRAG blend (``rankwise.config.rankrag_blend``):
passages cut to 128 tokens for ranking, the ``short`` answer template with passages cut to 80 words.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from rankwise.config.models import load_causal_lm
from rankwise.generate.local import LocalGenerator
from rankwise.generate.prompts import load_template
from rankwise.rerank.llm import DEFAULT_TEMPLATE, LLMReranker


@dataclass
class RankRAGParts:
    """The shared model and the two roles it plays."""

    model: Any
    tokenizer: Any
    reranker: Any
    generator: Any


def rankrag_parts(
    model: Any,
    tokenizer: Any,
    *,
    template: str = "short",
    max_passage_words: int | None = 80,
    max_new_tokens: int = 64,
    batch_size: int = 4,
    max_passage_tokens: int = 128,
    rerank_batch_size: int = 16,
    ranking_template: str | None = None,
    ranking_system_prompt: str | None = None,
    show_progress: bool = True,
) -> RankRAGParts:
    """Wrap one loaded ``model`` as both reranker and generator (no copy: the two share every weight)."""
    prompt = load_template(template)
    if max_passage_words is not None:
        prompt = replace(prompt, max_passage_words=max_passage_words)
    reranker = LLMReranker(
        model=model,
        tokenizer=tokenizer,
        template=ranking_template or DEFAULT_TEMPLATE,
        system_prompt=ranking_system_prompt,
        max_passage_tokens=max_passage_tokens,
        batch_size=rerank_batch_size,
        max_tokens=rerank_batch_size * 512,
        show_progress=show_progress,
    )
    generator = LocalGenerator.from_pretrained_objects(
        model,
        tokenizer,
        template=prompt,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    return RankRAGParts(model, tokenizer, reranker, generator)


def load_rankrag(
    model_dir: str, dtype: str = "auto", threads: int | None = None, device: str | None = None, **options: Any
) -> RankRAGParts:
    """Load ``model_dir`` once and build both roles on it; ``options`` go to :func:`rankrag_parts`.

    A model written by ``rankwise rankrag train`` carries ``rankrag.json`` (the blend's prompt settings: answer
    template, passage cuts, ranking prompt); those are the defaults, and ``options`` override them.
    """
    model, tokenizer, saved = shared_model(model_dir, dtype, threads, device)
    return rankrag_parts(model, tokenizer, **{**saved, **options})


@lru_cache(maxsize=1)
def shared_model(
    model_dir: str, dtype: str = "auto", threads: int | None = None, device: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, saved prompt settings)``, loaded once: the last model asked for stays loaded, so an
    experiment's ``rerank`` and ``generate`` stages of kind ``rankrag`` share one copy of the weights."""
    import json
    from pathlib import Path

    saved = Path(model_dir) / "rankrag.json"
    options = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    model, tokenizer = load_causal_lm(model_dir, dtype=dtype, device=device)
    return model, tokenizer, options
