"""Training files for the RankRAG trainer: trl's chat formats read from JSONL, or a Hugging Face dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankwise.data._io import iter_jsonl
from rankwise.errors import DataError


def read_chat_rows(path: str | Path, limit: int | None = None, keep_task: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL training file, each reduced to trl's columns: ``messages`` or ``prompt`` + ``completion``
    (and the blend's ``task`` with ``keep_task``, which the curriculum orders by).

    Every row must use the same format; the first bad line is named in the error.
    """
    rows: list[dict[str, Any]] = []
    columns: tuple[str, ...] | None = None
    for line, record in iter_jsonl(path):
        keys = ("messages",) if "messages" in record else ("prompt", "completion")
        missing = [k for k in keys if k not in record]
        if missing:
            raise DataError(path, f"expected 'messages' or 'prompt' + 'completion'; missing {missing}", line)
        if columns is None:
            columns = keys
        elif keys != columns:
            raise DataError(path, f"mixes formats: {list(keys)} here, {list(columns)} on earlier lines", line)
        for key in keys:
            value = record[key]
            ok = isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
            )
            if not ok:
                raise DataError(path, f"'{key}' must be a string or a list of {{role, content}} messages", line)
        if keep_task and not isinstance(record.get("task"), str):
            raise DataError(path, "the curriculum needs each example's 'task' (a blend file has it)", line)
        rows.append({k: record[k] for k in (*keys, "task") if k in keys or keep_task})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(path, "no training examples")
    return rows


def load_sft_dataset(
    source: str | Path, split: str = "train", limit: int | None = None, keep_task: bool = False
) -> Any:
    """A ``datasets.Dataset`` from a JSONL file (see :func:`read_chat_rows`) or a Hugging Face dataset name."""
    from datasets import Dataset, load_dataset

    if Path(source).is_file():
        return Dataset.from_list(read_chat_rows(source, limit, keep_task))
    if str(source).endswith(".jsonl"):
        raise DataError(source, "training file not found")
    dataset = load_dataset(str(source), split=split)
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset
