"""The RankRAG instruction blend (arXiv 2407.02485, Stage II): QA and a fraction of ranking data, as chats.

Five tasks, each example a conversational prompt-completion pair (trl's format; the loss goes on the completion):

- ``context_qa``: question + gold passages → answer with ``[n]`` citations (HotpotQA supporting paragraphs,
  MT-RAG reference passages, a user's QA JSONL), in the generator's prompt (:mod:`rankwise.generate.prompts`);
- ``rag_qa``: gold passage(s) + BM25 hard negatives, shuffled, to ``contexts`` passages → answer citing the gold
  positions (MT-RAG UNANSWERABLE tasks over BM25 passages → the abstention string);
- ``retrieved_qa`` (only where a source lists it): BM25's top ``contexts`` passages as retrieved, gold not forced
  in → answer citing the gold ones among them (a question whose gold BM25 misses gives none): the last stage of
  the generator curriculum (:mod:`rankwise.rankrag.curriculum`);
- ``ranking``: (question, passage) → "True"/"False" in exactly the prompt :class:`rankwise.rerank.llm.LLMReranker`
  scores (:func:`rankwise.rerank.llm.ranking_messages`, passage cut to ``max_passage_tokens`` the same way);
- ``rag_ranking``: question + ``contexts`` numbered passages → the numbers of the relevant ones.

Mixing: ``round(size * ranking_fraction)`` ranking examples and the rest QA; inside each group the tasks share by
``task_weights``, filled round-robin from seeded shuffles of every source's candidates, each source under its
``cap``. A task that runs out passes its share to the other task of its group; if a whole group runs out, the
blend shrinks so that the ranking fraction still holds (and the summary says so). Same config + seed → same file.

Held-out data (see :mod:`rankwise.config.rankrag_blend`): the builder refuses, before sampling, any candidate whose
query is a held-out one (SciFact test queries, HotpotQA held-out questions), by id or by question text — so a
user file holding an evaluation question is an error naming its line, not a silent leak.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rankwise.config.models import load_tokenizer
from rankwise.config.rankrag_blend import QA_TASKS, RANKING_TASKS, TASKS, BlendConfig
from rankwise.data._io import iter_jsonl
from rankwise.data.beir import QUERIES_FILE, read_queries
from rankwise.data.files import atomic_writer
from rankwise.data.hotpotqa import hotpotqa_split
from rankwise.data.trec import read_qrels
from rankwise.errors import DataError, RankwiseError
from rankwise.rankrag.format import Formatter, prompt_text
from rankwise.rankrag.sources import READERS, Candidate

__all__ = ["build_blend", "hotpotqa_split", "read_blend", "write_blend"]

TASK_TAGS = {"context_qa": "cqa", "rag_qa": "rqa", "retrieved_qa": "tqa", "ranking": "rank", "rag_ranking": "rrank"}


def normalise_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def build_blend(
    config: BlendConfig, tokenizer: Any = None, show_progress: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(examples, summary)`` for ``config``; ``tokenizer`` defaults to ``config.tokenizer`` loaded offline."""
    from rankwise.rankrag import sources as rankrag_sources

    start = time.perf_counter()
    if tokenizer is None:
        tokenizer = load_tokenizer(config.tokenizer)
    fmt = Formatter(config, tokenizer)
    notes: list[str] = []
    candidates: list[Candidate] = []
    heldout_ids: dict[str, set[str]] = {}
    heldout_texts: dict[str, str] = {}
    dev_ids: dict[str, set[str]] = {}  # held out for picking settings after training (scifact.dev_queries)
    for name, source in config.sources().items():
        if name == "hotpotqa":
            found, heldout = rankrag_sources.hotpotqa(source, fmt, notes)
            heldout_ids["hotpotqa"] = set(heldout)
            heldout_texts.update({normalise_question(q): f"HotpotQA held-out question {i}" for i, q in heldout.items()})
        else:
            found = READERS[name](source, fmt, notes)
        if name == "scifact":
            test = scifact_test_queries(source.path)
            heldout_ids["scifact"] = set(test)
            heldout_texts.update({normalise_question(q): f"SciFact test query {i}" for i, q in test.items()})
            dev = rankrag_sources.scifact_dev_queries(source)
            dev_ids["scifact"] = set(dev)
            heldout_texts.update({normalise_question(q.text): f"SciFact dev query {i}" for i, q in dev.items()})
        candidates.extend(found)
    guarded = {name: ids | dev_ids.get(name, set()) for name, ids in heldout_ids.items()}
    candidates, dropped = refuse_heldout(candidates, guarded, heldout_texts)
    notes.extend(dropped)
    picked, shrink_note = mix(candidates, config)
    notes.extend([shrink_note] if shrink_note else [])
    examples = materialise(picked, show_progress)
    summary = summarise(examples, picked, candidates, config, tokenizer)
    summary["max_example_tokens"] = config.max_example_tokens
    summary["shrunk_to_fit"] = dict(fmt.shrunk)
    summary["over_budget"] = dict(fmt.over_budget)
    if fmt.over_budget:
        notes.append(
            f"{sum(fmt.over_budget.values())} examples stay over max_example_tokens={config.max_example_tokens} "
            "even with passages and history cut to a few words; a trainer with that max_length cuts their end"
        )
    summary["heldout"] = {name: len(ids) for name, ids in heldout_ids.items()}
    summary["dev"] = {name: len(ids) for name, ids in dev_ids.items() if ids}
    summary["notes"] = notes
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return examples, summary


def scifact_test_queries(directory: str | Path) -> dict[str, str]:
    """SciFact's test queries (id -> text): those judged in ``qrels/test.tsv`` (none when the file is absent)."""
    qrels_path = Path(directory) / "qrels" / "test.tsv"
    if not qrels_path.is_file():
        return {}
    queries, _ = read_queries(Path(directory) / QUERIES_FILE)
    return {qid: queries[qid].text for qid in read_qrels(qrels_path, beir_directory=True) if qid in queries}


def refuse_heldout(
    candidates: Sequence[Candidate], heldout_ids: Mapping[str, set[str]], heldout_texts: Mapping[str, str]
) -> tuple[list[Candidate], list[str]]:
    """Raise if a candidate's query is held out: same source and id, or (in a user file) the same question text.

    A training query of a built-in source whose text equals a held-out one (SciFact has two train claims that
    are also test claims, judged on the same abstracts) is dropped instead, and counted in the notes.
    """
    kept: list[Candidate] = []
    dropped: dict[str, set[str]] = {}
    for c in candidates:
        what = None
        match = heldout_texts.get(normalise_question(c.question))
        if c.query_id in heldout_ids.get(c.source, set()):
            what = f"{c.source} query {c.query_id} is held out"
        elif match is not None and c.where:
            what = f"its question is {match}"
        elif match is not None:
            dropped.setdefault(c.source, set()).add(f"{c.query_id} (= {match})")
            continue
        if what:
            where = f" ({c.where})" if c.where else ""
            raise RankwiseError(
                f"refusing to build the blend: a {c.task} example from {c.source}{where} would leak evaluation "
                f"data: {what}. Remove it from the source (or change the held-out split)."
            )
        kept.append(c)
    notes = [
        f"{source}: {len(ids)} training queries dropped because their text is a held-out query's: "
        + ", ".join(sorted(ids))
        for source, ids in dropped.items()
    ]
    return kept, notes


def task_targets(n: int, tasks: Sequence[str], weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` over ``tasks`` by ``weights`` (largest remainders, ties in task order)."""
    total = sum(weights.get(t, 0.0) for t in tasks)
    if total <= 0:
        return dict.fromkeys(tasks, 0)
    exact = {t: n * weights.get(t, 0.0) / total for t in tasks}
    out = {t: int(v) for t, v in exact.items()}
    for t in sorted(tasks, key=lambda t: -(exact[t] - out[t]))[: n - sum(out.values())]:
        out[t] += 1
    return out


def mix(candidates: Sequence[Candidate], config: BlendConfig) -> tuple[list[Candidate], str | None]:
    """Pick the blend (see the module docstring); returns the picks in a seeded random order and a note when
    the blend had to shrink."""
    import random

    pools = {t: [c for c in candidates if c.task == t] for t in TASKS}
    for task, pool in pools.items():
        random.Random(f"{config.seed}:pool:{task}").shuffle(pool)
    caps = {name: source.cap for name, source in config.sources().items()}
    n_rank = round(config.size * config.ranking_fraction)
    groups = {QA_TASKS: config.size - n_rank, RANKING_TASKS: n_rank}
    weights = {t: config.task_weights.get(t, 0.0) if pools[t] else 0.0 for t in TASKS}
    want: dict[str, int] = {}
    for tasks, n in groups.items():
        want.update(task_targets(n, tasks, weights))
    picked: dict[tuple[str, ...], list[Candidate]] = {tasks: [] for tasks in groups}
    count = Counter[str]()
    used = Counter[str]()
    cursor = Counter[str]()
    progress = True
    while progress:
        progress = False
        for tasks in groups:
            for task in tasks:
                pool = pools[task]
                while count[task] < want[task] and cursor[task] < len(pool):
                    c = pool[cursor[task]]
                    cursor[task] += 1
                    if caps.get(c.source) is None or used[c.source] < caps[c.source]:
                        picked[tasks].append(c)
                        count[task] += 1
                        used[c.source] += 1
                        progress = True
                        break
            for task in tasks:  # a task that ran out hands its deficit to the group's others (weight 0: none)
                deficit = want[task] - count[task]
                others = [t for t in tasks if t != task and weights[t] > 0 and cursor[t] < len(pools[t])]
                if deficit > 0 and cursor[task] >= len(pools[task]) and others:
                    want[task] = count[task]
                    for i in range(deficit):
                        want[others[i % len(others)]] += 1
                    progress = True
    qa, ranking = picked[QA_TASKS], picked[RANKING_TASKS]
    note = None
    if len(qa) < groups[QA_TASKS] or len(ranking) < groups[RANKING_TASKS]:
        f = config.ranking_fraction
        limits = ([len(qa) / (1 - f)] if f < 1 else []) + ([len(ranking) / f] if f > 0 else [])
        total = int(min(limits) + 1e-9)
        if total == 0:
            empty = "QA" if len(qa) == 0 and f < 1 else "ranking"
            raise RankwiseError(
                f"no {empty} examples available from the configured sources and tasks (ranking_fraction {f}); "
                "add a source that gives them or change ranking_fraction"
            )
        keep_rank = min(len(ranking), round(total * f))
        keep_qa = min(len(qa), total - keep_rank)
        note = (
            f"only {len(qa)} QA and {len(ranking)} ranking candidates fit the caps; the blend has "
            f"{keep_qa + keep_rank} examples instead of {config.size}, keeping ranking_fraction {f}"
        )
        qa, ranking = qa[:keep_qa], ranking[:keep_rank]
    chosen = qa + ranking
    random.Random(f"{config.seed}:order").shuffle(chosen)
    return chosen, note


def materialise(picked: Sequence[Candidate], show_progress: bool = False) -> list[dict[str, Any]]:
    """The blend records (the JSONL contract) for the picked candidates, in order."""
    items: Any = picked
    if show_progress:
        from rich.progress import track

        items = track(picked, description="building examples", transient=True)
    examples = []
    seen: set[str] = set()
    for c in items:
        prompt, completion = c.make()
        example_id = f"{c.source}-{TASK_TAGS[c.task]}-{c.key}"
        if example_id in seen:
            raise RankwiseError(f"two blend examples share the id {example_id}")
        seen.add(example_id)
        examples.append(
            {
                "id": example_id,
                "task": c.task,
                "source": c.source,
                "query_id": c.query_id,
                "prompt": prompt,
                "completion": completion,
            }
        )
    return examples


def summarise(
    examples: Sequence[dict[str, Any]],
    picked: Sequence[Candidate],
    candidates: Sequence[Candidate],
    config: BlendConfig,
    tokenizer: Any,
) -> dict[str, Any]:
    """Counts per task, source and (source, task), ranking share, True/False balance and mean prompt tokens."""
    texts = [prompt_text(tokenizer, e["prompt"]) for e in examples]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    by_task: dict[str, list[int]] = {}
    for e, n in zip(examples, lengths, strict=True):
        by_task.setdefault(e["task"], []).append(n)
    by_source_task: dict[str, dict[str, int]] = {}
    for e in examples:
        row = by_source_task.setdefault(e["source"], {})
        row[e["task"]] = row.get(e["task"], 0) + 1
    ranking = sum(1 for e in examples if e["task"] in RANKING_TASKS)
    return {
        "size_requested": config.size,
        "size": len(examples),
        "ranking_fraction_requested": config.ranking_fraction,
        "ranking_share": round(ranking / len(examples), 4) if examples else 0.0,
        "tasks": {t: n for t in TASKS if (n := sum(1 for e in examples if e["task"] == t))},
        "sources": dict(Counter(e["source"] for e in examples).most_common()),
        "by_source_task": by_source_task,
        "available": {t: n for t in TASKS if (n := sum(1 for c in candidates if c.task == t))},
        "labels": dict(Counter(c.label for c in picked if c.label is not None)),
        "mean_prompt_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "mean_prompt_tokens_by_task": {t: round(sum(v) / len(v), 1) for t, v in by_task.items()},
        "seed": config.seed,
    }


def write_blend(examples: Sequence[dict[str, Any]], path: str | Path) -> int:
    """Write the blend as JSON lines, atomically; returns how many were written."""
    with atomic_writer(path) as handle:
        for example in examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
    return len(examples)


def read_blend(path: str | Path) -> list[dict[str, Any]]:
    """Read a blend file back; records missing a contract field raise a DataError naming the line."""
    examples = []
    for line, record in iter_jsonl(path):
        for key in ("id", "task", "source", "query_id", "prompt", "completion"):
            if key not in record:
                raise DataError(path, f"blend record lacks field '{key}'", line)
        if record["task"] not in TASKS:
            raise DataError(path, f"unknown task '{record['task']}' (known: {', '.join(TASKS)})", line)
        examples.append(record)
    return examples
