"""The generator curriculum: gold, then gold + negatives, then retrieved passages, in the order the trainer reads."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from rankwise.config.rankrag_train import RankRAGTrainConfig
from rankwise.errors import RankwiseError
from rankwise.rankrag.curriculum import curriculum_order, step_mix
from rankwise.rankrag.train import train_rankrag

PHASE_WORDS = {"context_qa": "Gold", "rag_qa": "Mixed", "retrieved_qa": "Retrieved"}


def test_phases_follow_progress_and_ranking_is_spread_evenly() -> None:
    tasks = ["context_qa"] * 5 + ["rag_qa"] * 5 + ["retrieved_qa"] * 5 + ["ranking"] * 2 + ["rag_ranking"] * 3
    order, phases = curriculum_order(tasks, 40, gold_until=0.25, mixed_until=0.5, seed=1)
    assert len(order) == len(phases) == 40
    qa = [p for p in phases if p != "ranking"]
    assert qa == sorted(qa, key=["gold", "mixed", "retrieved"].index)  # never back to an earlier phase
    ranking_at = [i for i, p in enumerate(phases) if p == "ranking"]
    assert len(ranking_at) == 10  # the blend's 5 of 20, i.e. a quarter of the 40
    assert all(b - a == 4 for a, b in itertools.pairwise(ranking_at))
    for index, phase in zip(order, phases, strict=True):
        expected = {"gold": "context_qa", "mixed": "rag_qa", "retrieved": "retrieved_qa"}.get(phase)
        assert tasks[index] == expected if expected else tasks[index] in ("ranking", "rag_ranking")
    # 40 examples from 20 rows: every phase cycles through its shuffled pool before repeating one
    gold = [i for i, p in zip(order, phases, strict=True) if p == "gold"]
    assert sorted(gold[:5]) == list(range(5))
    assert curriculum_order(tasks, 40, 0.25, 0.5, seed=1) == (order, phases)  # seeded
    mix = step_mix(phases, 8)
    assert len(mix) == 5 and all(sum(v for k, v in s.items() if k != "step") == 8 for s in mix)


def test_a_blend_without_retrieved_examples_is_refused_by_name() -> None:
    with pytest.raises(RankwiseError, match="retrieved_qa"):
        curriculum_order(["context_qa", "rag_qa", "ranking"], 10, 0.3, 0.7)
    with pytest.raises(ValueError, match="mixed_until"):
        RankRAGTrainConfig(output_dir="o", blend_path="b", curriculum={"gold_until": 0.5, "mixed_until": 0.4})


def _three_steps(model: Path, blend: Path, tmp_path: Path, **order: Any) -> RankRAGTrainConfig:
    """Three steps of four examples on the tiny model, ordered by ``order`` (a curriculum or a schedule)."""
    return RankRAGTrainConfig(
        output_dir=str(tmp_path / "run"), model=str(model), blend_path=str(blend), max_steps=3, batch_size=4,
        warmup_ratio=0.0, dtype="float32", save_steps=3, logging_steps=1, lora={"r": 2, "alpha": 4, "dropout": 0.0},
        **order,
    )  # fmt: skip


class SeenCompletions(TrainerCallback):
    """The answers of every training example, in the order the trainer's data loader gives them."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.answers = tokenizer, []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for batch in kwargs["train_dataloader"]:
            for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
                self.answers.append(self.tokenizer.decode(ids[labels != -100]))


def test_the_trainer_reads_gold_then_mixed_then_retrieved(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    rows = [
        {
            "id": f"{task}-{i}",
            "task": task,
            "source": "test",
            "query_id": str(i),
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "completion": [{"role": "assistant", "content": f"{word} {i}"}],
        }
        for task, word in PHASE_WORDS.items()
        for i in range(6)
    ]
    blend = tmp_path / "blend.jsonl"
    blend.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    seen = SeenCompletions(AutoTokenizer.from_pretrained(tiny_lm_dir))
    config = _three_steps(tiny_lm_dir, blend, tmp_path, curriculum={"gold_until": 0.3, "mixed_until": 0.6})
    metrics = train_rankrag(config, show_progress=False, callbacks=[seen])
    words = [answer.split()[0] for answer in seen.answers]
    assert words == ["Gold"] * 4 + ["Mixed"] * 4 + ["Retrieved"] * 4
    mix = [json.loads(line) for line in (tmp_path / "run" / "curriculum.jsonl").read_text().splitlines()]
    assert [(m["gold"], m["mixed"], m["retrieved"], m["ranking"]) for m in mix] == [
        (4, 0, 0, 0),
        (0, 4, 0, 0),
        (0, 0, 4, 0),
    ]
    assert metrics["curriculum"]["first_retrieved_step"] == 3 and metrics["steps"] == 3
    assert metrics["curriculum"]["repeated"] == {}  # 4 of the 6 examples of each phase: none seen twice


def test_retrieved_qa_examples_show_what_bm25_ranked(data_root: Path) -> None:
    from rankwise.config.models import load_tokenizer
    from rankwise.config.rankrag_blend import from_mapping
    from rankwise.rankrag.blend import build_blend

    path = str(data_root / "hotpotqa-train100" / "hotpotqa_train.json")
    tasks = ["context_qa", "rag_qa", "retrieved_qa"]
    config = from_mapping({"size": 300, "ranking_fraction": 0.0, "hotpotqa": {"path": path, "tasks": tasks}})
    examples, _summary = build_blend(config, load_tokenizer("smollm2"))
    counts = Counter(e["task"] for e in examples)
    assert counts["retrieved_qa"] > 0 and counts["context_qa"] > 0
    for example in (e for e in examples if e["task"] == "retrieved_qa"):
        assert "[" in example["completion"][-1]["content"]  # cites the gold paragraph(s) retrieval found
    default = from_mapping({"size": 300, "ranking_fraction": 0.0, "hotpotqa": {"path": path}})
    assert "retrieved_qa" not in Counter(e["task"] for e in build_blend(default, load_tokenizer("smollm2"))[0])


def test_a_phase_short_of_examples_repeats_them_and_says_so(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from datasets import Dataset

    from rankwise.rankrag.curriculum import apply_curriculum

    tasks = ["context_qa"] * 4 + ["rag_qa"] * 2 + ["retrieved_qa"] * 4 + ["ranking"] * 2
    args = SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=1, world_size=1, max_steps=6)
    trainer = SimpleNamespace(
        args=args, train_dataset=Dataset.from_list([{"task": t, "n": i} for i, t in enumerate(tasks)])
    )
    summary = apply_curriculum(trainer, 0.3, 0.7, 0, tmp_path)
    # 24 examples: ranking at 5, 11, 17, 23 (1 in 6); gold while i < 7.2, mixed while i < 16.8, then retrieved
    assert len(trainer.train_dataset) == 24
    assert summary["examples"] == {"gold": 7, "ranking": 4, "mixed": 8, "retrieved": 5}
    assert summary["repeated"] == {"gold": 3, "ranking": 2, "mixed": 6, "retrieved": 1}
    assert len((tmp_path / "curriculum.jsonl").read_text().splitlines()) == 6


def test_sequential_puts_every_ranking_example_first_in_the_blends_proportions() -> None:
    from rankwise.rankrag.curriculum import sequential_order

    tasks = ["context_qa"] * 6 + ["ranking"] * 2 + ["rag_ranking"] * 2 + ["rag_qa"] * 6  # a quarter ranking
    order, phases = sequential_order(tasks, 24, seed=3)
    assert phases == ["ranking"] * 6 + ["qa"] * 18  # as many of each as the joint blend would show
    assert all(tasks[i] in ("ranking", "rag_ranking") for i in order[:6])
    assert all(tasks[i] in ("context_qa", "rag_qa") for i in order[6:])
    assert sorted(order[:4]) == [6, 7, 8, 9] and sorted(order[6:18]) == [*range(6), *range(10, 16)]  # pools cycle
    assert sequential_order(tasks, 24, seed=3) == (order, phases)
    with pytest.raises(RankwiseError, match="ranking and QA examples"):
        sequential_order(["context_qa", "rag_qa"], 4)
    with pytest.raises(ValueError, match="give one of them"):
        RankRAGTrainConfig(output_dir="o", blend_path="b", schedule="sequential", curriculum={})


def test_the_trainer_reads_ranking_then_qa_when_sequential(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    rows = [
        {"id": f"{task}-{i}", "task": task, "prompt": [{"role": "user", "content": f"Question {i}?"}],
         "completion": [{"role": "assistant", "content": f"{word} {i}"}]}
        for task, word in (("ranking", "True"), ("context_qa", "Gold"))
        for i in range(6)
    ]  # fmt: skip
    blend = tmp_path / "blend.jsonl"
    blend.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    seen = SeenCompletions(AutoTokenizer.from_pretrained(tiny_lm_dir))
    config = _three_steps(tiny_lm_dir, blend, tmp_path, schedule="sequential")
    metrics = train_rankrag(config, show_progress=False, callbacks=[seen])
    assert [answer.split()[0] for answer in seen.answers] == ["True"] * 6 + ["Gold"] * 6
    mix = [json.loads(line) for line in (tmp_path / "run" / "curriculum.jsonl").read_text().splitlines()]
    assert [(m["ranking"], m["qa"]) for m in mix] == [(4, 0), (2, 2), (0, 4)]
    assert metrics["sequential"]["first_qa_step"] == 2 and metrics["sequential"]["repeated"] == {}
