"""Batch answering on an engine (:mod:`rankwise.engine`): shards of questions, each answered by a generator that
the engine's worker builds for itself (one model per Ray actor).

The generate stage (:mod:`rankwise.experiment.answers`) decides what a shard is (one of its saved chunks of
questions, as :class:`~rankwise.generate.base.GenerationRequest` objects), skips the chunks a killed run already
saved and writes each shard's answers as it arrives; the engine only runs shards. A shard is answered by the same
``generate_batch`` call as in one process, so its prompts are batched the same way and greedy answers are the
same whichever engine ran it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rankwise.generate.answer import Answer
from rankwise.generate.base import GenerationRequest


def _answer_shard(
    generator: Any, requests: Sequence[GenerationRequest], report: Callable[[int], None] | None
) -> list[Answer]:
    return list(generator.generate_batch(requests))


class GeneratorRecipe:
    """Builds the worker inside the process that runs it: ``make()`` (picklable for a Ray engine, e.g. a
    ``functools.partial`` of the builder and a config section) gives the generator."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __call__(self) -> Callable[[Sequence[GenerationRequest], Callable[[int], None] | None], list[Answer]]:
        return partial(_answer_shard, self.make())
