"""Conversation-level train/test splits of MT-RAG tasks, and the held-out file that records one.

A split never puts two tasks of one conversation on different sides: conversations (not tasks) are drawn, per
domain so that every domain keeps a held-out share, with a seeded ``random.Random`` (deterministic for a seed).
``rankwise train reranker`` on ``data: mtrag:...`` writes the split to ``<output_dir>/heldout.json``; an
experiment's ``data: {tasks_file: .../heldout.json}`` then evaluates on the held-out tasks only.

Note: in the published MT-RAG-UN data every judged task comes from its own conversation (332 tasks, 332
conversation ids), so on it a conversation split is also a task split; the grouping matters for data sets with
several turns of one conversation (the original MT-RAG tasks).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rankwise.data.files import atomic_write_text
from rankwise.errors import DataError, RankwiseError

HELDOUT_FILE = "heldout.json"


def split_by_conversation(
    conversation_of: Mapping[str, str], test_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Task ids split into (train, test), both sorted: ``round(test_fraction * conversations)`` conversations
    (at least one, never all) drawn with ``seed`` go to test with all their tasks."""
    if not 0 < test_fraction < 1:
        raise RankwiseError(f"test_fraction must be in (0, 1), got {test_fraction}")
    conversations = sorted(set(conversation_of.values()))
    if len(conversations) < 2:
        raise RankwiseError(f"a conversation split needs at least 2 conversations, got {len(conversations)}")
    count = min(len(conversations) - 1, max(1, round(test_fraction * len(conversations))))
    test = set(random.Random(seed).sample(conversations, count))
    train_ids = sorted(t for t, c in conversation_of.items() if c not in test)
    test_ids = sorted(t for t, c in conversation_of.items() if c in test)
    return train_ids, test_ids


def write_heldout(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_heldout_tasks(path: str | Path) -> set[str]:
    """The held-out task ids of a ``heldout.json`` (every domain's)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "held-out task file not found (written by `rankwise train reranker`)") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not JSON: {exc.msg}", line=exc.lineno) from None
    tasks = record.get("tasks") if isinstance(record, dict) else None
    if not isinstance(tasks, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in tasks.values()
    ):
        raise DataError(path, "field 'tasks' must map each domain to a list of task ids")
    return {task for ids in tasks.values() for task in ids}
