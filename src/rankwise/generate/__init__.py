"""Answers that cite their evidence: ``generate(question, passages, history=()) -> Answer``.

Backends: :class:`~rankwise.generate.local.LocalGenerator` (transformers; the bundled SmolLM2 by default) and
:class:`~rankwise.generate.http.HTTPGenerator` (any OpenAI-compatible chat-completions server).
"""

from __future__ import annotations

from typing import Any

from rankwise.errors import RankwiseError
from rankwise.generate.answer import Answer, Citation
from rankwise.generate.http import HTTPGenerator
from rankwise.generate.local import LocalGenerator


def load_generator(spec: str, model: str | None = None, **options: Any) -> Any:
    """A generator from a spec: an ``http(s)://`` endpoint (``model`` names the served model), or a local model
    (``smollm2``, a hub name, a directory or a ``.gguf`` file). ``options`` go to the generator's constructor.
    """
    if spec.startswith(("http://", "https://")):
        if not model:
            raise RankwiseError(f"{spec}: an HTTP generator needs the served model's name (--generator-model)")
        return HTTPGenerator(spec, model, **options)

    return LocalGenerator(spec, **options)


__all__ = ["Answer", "Citation", "load_generator"]
