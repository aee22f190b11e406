"""The generator curriculum of Stage II: where a QA example's passages come from moves with training progress.

Early, the generator reads its gold passages alone (``context_qa``); in the middle, gold mixed with BM25 hard
negatives (``rag_qa``); late, what retrieval returned, gold not forced in (``retrieved_qa``). Ranking examples
(``ranking``, ``rag_ranking``) are spread evenly over every step at the blend's ranking fraction. The plain blend
shuffles all of them together instead.

:func:`curriculum_order` lays out the examples the training run will see (``max_steps`` × batch × accumulation ×
processes): example ``i`` of ``n`` is a gold one while ``i / n < gold_until``, a mixed one while ``< mixed_until``,
then a retrieved one, each phase drawn from a seeded shuffle of its task's examples (cycled when a phase needs
more than the blend has: the summary counts the repeats). The trainer then reads them in that order
(``train_sampling_strategy: sequential``) and ``curriculum.jsonl`` in the run's folder gives the mix of every step.

``schedule: sequential`` (RankRAG's ablation of its joint blend) orders the same blend another way: all the
ranking examples the run sees first, then the QA ones (:func:`sequential_order`), logged the same way.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankwise.config.rankrag_blend import RANKING_TASKS
from rankwise.data.files import atomic_write_text
from rankwise.errors import RankwiseError

PHASE_TASKS = {"gold": "context_qa", "mixed": "rag_qa", "retrieved": "retrieved_qa"}
MIX_FILE = "curriculum.jsonl"


def phase_at(progress: float, gold_until: float, mixed_until: float) -> str:
    """The QA phase at ``progress`` (0 = first example, 1 = the end) of training."""
    return "gold" if progress < gold_until else "mixed" if progress < mixed_until else "retrieved"


def curriculum_order(
    tasks: Sequence[str], total: int, gold_until: float, mixed_until: float, seed: int = 0
) -> tuple[list[int], list[str]]:
    """``(indexes into tasks, phase of each)``, ``total`` long: the order the trainer reads the examples in."""
    if total < 1:
        raise RankwiseError("curriculum: nothing to train (the run sees no example)")
    pools = {phase: [i for i, t in enumerate(tasks) if t == task] for phase, task in PHASE_TASKS.items()}
    missing = [PHASE_TASKS[phase] for phase, pool in pools.items() if not pool]
    if missing:
        raise RankwiseError(
            f"curriculum: the blend has no {' or '.join(missing)} examples; list them in the sources' tasks "
            "(e.g. hotpotqa: {tasks: [context_qa, rag_qa, retrieved_qa, ranking, rag_ranking]})"
        )
    ranking = [i for i, t in enumerate(tasks) if t in RANKING_TASKS]
    for name, pool in (*pools.items(), ("ranking", ranking)):
        random.Random(f"{seed}:curriculum:{name}").shuffle(pool)
    pools["ranking"] = ranking
    fraction = len(ranking) / len(tasks)
    drawn: Counter[str] = Counter()
    order, phases = [], []
    for i in range(total):
        if ranking and int((i + 1) * fraction) > int(i * fraction):
            phase = "ranking"
        else:
            phase = phase_at(i / total, gold_until, mixed_until)
        pool = pools[phase]
        order.append(pool[drawn[phase] % len(pool)])
        phases.append(phase)
        drawn[phase] += 1
    return order, phases


def sequential_order(tasks: Sequence[str], total: int, seed: int = 0) -> tuple[list[int], list[str]]:
    """``(indexes into tasks, "ranking"/"qa" of each)``, ``total`` long: every ranking example the run sees first,
    then every QA one, in the blend's proportions (so the joint blend and this order see as many of each)."""
    if total < 1:
        raise RankwiseError("sequential: nothing to train (the run sees no example)")
    pools = {"ranking": [i for i, t in enumerate(tasks) if t in RANKING_TASKS]}
    pools["qa"] = [i for i, t in enumerate(tasks) if t not in RANKING_TASKS]
    if not pools["ranking"] or not pools["qa"]:
        raise RankwiseError(
            "schedule: sequential needs ranking and QA examples in the blend (0 < ranking_fraction < 1)"
        )
    for name, pool in pools.items():
        random.Random(f"{seed}:sequential:{name}").shuffle(pool)
    first = round(total * len(pools["ranking"]) / len(tasks))
    counts = {"ranking": first, "qa": total - first}
    order = [pools[name][i % len(pools[name])] for name in counts for i in range(counts[name])]
    return order, [name for name in counts for _ in range(counts[name])]


def step_mix(phases: Sequence[str], per_step: int, names: Sequence[str] = (*PHASE_TASKS, "ranking")) -> list[dict]:
    """How many examples of each phase every optimizer step of ``per_step`` examples sees."""
    steps = []
    for start in range(0, len(phases), per_step):
        counts = Counter(phases[start : start + per_step])
        steps.append({"step": len(steps) + 1, **{p: counts[p] for p in names}})
    return steps


def _reorder(trainer: Any, order: list[int], phases: list[str], names: Sequence[str], out: Path) -> tuple[list, dict]:
    """Put ``trainer.train_dataset`` in ``order`` and write every step's mix to ``out/curriculum.jsonl``."""
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    trainer.train_dataset = trainer.train_dataset.select(order)
    steps = step_mix(phases, per_step, names)
    atomic_write_text(out / MIX_FILE, "".join(json.dumps(step) + "\n" for step in steps))
    return steps, dict(Counter(phases))


def _examples_seen(trainer: Any) -> int:
    args = trainer.args
    return args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def apply_curriculum(trainer: Any, gold_until: float, mixed_until: float, seed: int, out: Path) -> dict[str, Any]:
    """Put ``trainer.train_dataset`` (with its ``task`` column; trl has already dropped examples cut before their
    answer) in curriculum order for ``max_steps`` steps, write ``out/curriculum.jsonl``; returns the summary."""
    tasks = trainer.train_dataset["task"]
    order, phases = curriculum_order(tasks, _examples_seen(trainer), gold_until, mixed_until, seed)
    steps, counts = _reorder(trainer, order, phases, (*PHASE_TASKS, "ranking"), out)
    available = Counter(tasks)
    have = {phase: available[task] for phase, task in PHASE_TASKS.items()}
    have["ranking"] = sum(available[task] for task in RANKING_TASKS)
    repeated = {phase: n - have[phase] for phase, n in counts.items() if n > have[phase]}
    return {
        "gold_until": gold_until,
        "mixed_until": mixed_until,
        "first_mixed_step": next((s["step"] for s in steps if s["mixed"]), None),
        "first_retrieved_step": next((s["step"] for s in steps if s["retrieved"]), None),
        "examples": counts,
        "repeated": repeated,
        "mix_file": str(out / MIX_FILE),
    }


def apply_sequential(trainer: Any, seed: int, out: Path) -> dict[str, Any]:
    """``schedule: sequential``: the ranking examples first, then the QA ones (:func:`sequential_order`)."""
    tasks = trainer.train_dataset["task"]
    order, phases = sequential_order(tasks, _examples_seen(trainer), seed)
    steps, counts = _reorder(trainer, order, phases, ("ranking", "qa"), out)
    ranking = sum(1 for t in tasks if t in RANKING_TASKS)
    have = {"ranking": ranking, "qa": len(tasks) - ranking}
    return {
        "first_qa_step": next((s["step"] for s in steps if s["qa"]), None),
        "examples": counts,
        "repeated": {name: n - have[name] for name, n in counts.items() if n > have[name]},
        "mix_file": str(out / MIX_FILE),
    }
