"""Whole-data-set runs (rankwise.experiment.rag) on real HotpotQA and MT-RAG files, BM25 and a scripted generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.data.hotpotqa import hotpotqa_inputs
from rankwise.errors import RankwiseError
from rankwise.experiment.rag import run_hotpotqa
from rankwise.experiment.rag_mtrag import run_mtrag
from rankwise.generate.citations import build_answer
from rankwise.retrieve.bm25 import BM25Retriever


def make_bm25(corpus):
    retriever = BM25Retriever(show_progress=False)
    retriever.index(corpus)
    return retriever


class ScriptedGenerator:
    """Cites passage [1] with the first words of its text as the answer; abstains when told to."""

    def __init__(self, abstain: bool = False) -> None:
        self.abstain = abstain
        self.calls = 0

    def generate_batch(self, requests):
        self.calls += len(requests)
        out = []
        for r in requests:
            if self.abstain or not r.passages:
                raw = "insufficient context"
            else:
                raw = " ".join(r.passages[0].text.split()[:3]) + " [1] [9]"
            out.append(build_answer(raw, [p.id for p in r.passages]))
        return out


def test_hotpotqa_inputs_sentence_per_line(hotpotqa_file: Path) -> None:
    examples, corpus, candidates = hotpotqa_inputs(hotpotqa_file, limit=3)
    assert len(examples) == 3 and len(corpus) == 994
    first = examples[0]
    assert len(candidates[first.id]) == 10
    doc = corpus["Alû"]
    sentences = dict(first.context)["Alû"]
    assert doc.text.split("\n") == [" ".join(s.split()) for s in sentences]


def test_hotpotqa_retrieval_only(hotpotqa_file: Path, tmp_path: Path) -> None:
    metrics = run_hotpotqa(hotpotqa_file, tmp_path, make_bm25)
    retrieval = metrics["retrieval"]
    assert metrics["questions"] == 100 and "qa" not in metrics
    assert 0.0 < retrieval["both_gold@2"] <= retrieval["both_gold@5"] <= 1.0
    assert retrieval["gold_recall@2"] <= retrieval["gold_recall@5"]
    records = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(records) == 100
    # distractor setting: the ranking holds exactly the question's own paragraphs (10, or 4 for one question)
    _, _, candidates = hotpotqa_inputs(hotpotqa_file)
    assert all(sorted(d for d, _ in r["ranking"]) == sorted(candidates[r["id"]]) for r in records)
    assert sum(len(r["ranking"]) for r in records) == 994
    assert (tmp_path / "run.trec").read_text().count("\n") == 994
    assert json.loads((tmp_path / "metrics.json").read_text())["retrieval"] == retrieval
    assert not (tmp_path / "answers.partial.jsonl").exists()


def test_hotpotqa_with_a_generator_scores_citations(hotpotqa_file: Path, tmp_path: Path) -> None:
    generator = ScriptedGenerator()
    metrics = run_hotpotqa(hotpotqa_file, tmp_path, make_bm25, generator=generator, k=3, limit=5)
    qa = metrics["qa"]
    assert generator.calls == 5
    assert qa["answers_with_citations"] == 1.0 and qa["abstention_rate"] == 0.0
    assert qa["dropped_citations"] == 1.0  # every answer cites [9] of 3 passages
    records = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    first = records[0]
    cited = first["answer"]["citations"][0]["doc_id"]
    assert cited == first["passages"][0]["doc_id"]
    expected_precision = 1.0 if cited in first["gold_titles"] else 0.0
    assert first["scores"]["citation_precision"] == expected_precision
    assert first["scores"]["sp_paragraph_recall"] == expected_precision / 2
    assert qa["citation_precision"] == pytest.approx(sum(r["scores"]["citation_precision"] for r in records) / 5)
    assert set(first["latency"]) == {"retrieve_s", "generate_s", "total_s"}


def test_resume_skips_done_questions_and_refuses_other_settings(hotpotqa_file: Path, tmp_path: Path) -> None:
    partial = tmp_path / "answers.partial.jsonl"
    first = ScriptedGenerator()
    run_hotpotqa(hotpotqa_file, tmp_path, make_bm25, generator=first, limit=4, chunk_size=2)
    # simulate an interrupted run: put back a partial file with the first two records
    lines = (tmp_path / "answers.jsonl").read_text().splitlines()
    partial.write_text("\n".join(lines[:2]) + "\n")
    (tmp_path / ".rag-settings.json").write_text(
        json.dumps({"dataset": "hotpotqa", "setting": "distractor", "k": 5, "questions": 4}, sort_keys=True)
    )
    second = ScriptedGenerator()
    run_hotpotqa(hotpotqa_file, tmp_path, make_bm25, generator=second, limit=4, chunk_size=2)
    assert second.calls == 2
    resumed = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    original = [json.loads(line) for line in lines]
    assert [(r["id"], r["answer"]) for r in resumed] == [(r["id"], r["answer"]) for r in original]
    assert resumed[:2] == original[:2]  # the first two records came from the partial file as they were
    partial.write_text(lines[0] + "\n")
    with pytest.raises(RankwiseError, match="different settings"):
        run_hotpotqa(hotpotqa_file, tmp_path, make_bm25, generator=second, limit=4, k=2)


def test_mtrag_pooled_retrieval_one_domain(data_root: Path, tmp_path: Path) -> None:
    metrics = run_mtrag(data_root / "mtrag", tmp_path, make_bm25, domains=["fiqa"], rewrite="full_history")
    assert metrics["pooled_evaluation"] is True and "POOLED EVALUATION" in metrics["note"]
    fiqa = metrics["retrieval"]["fiqa"]
    assert fiqa["queries"] == 58 and 0.0 < fiqa["nDCG@10"] <= 1.0
    assert metrics["retrieval"]["all"]["queries"] == 58
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["pooled_evaluation"] is True
    record = json.loads((tmp_path / "answers.jsonl").read_text().splitlines()[0])
    assert record["search_query"].endswith(record["question"]) and record["judged"]


def test_mtrag_abstention_by_answerability(data_root: Path, tmp_path: Path) -> None:
    metrics = run_mtrag(
        data_root / "mtrag",
        tmp_path / "a",
        make_bm25,
        generator=ScriptedGenerator(abstain=True),
        domains=["fiqa"],
        answerability=["ANSWERABLE", "UNANSWERABLE"],
    )
    generation = metrics["generation"]
    assert generation["abstention_rate_ANSWERABLE"] == 1.0
    assert generation["abstention_rate_UNANSWERABLE"] == 1.0
    assert generation["abstention_gap_UNANSWERABLE_minus_ANSWERABLE"] == 0.0
    assert set(generation["by_answerability"]) == {"ANSWERABLE", "UNANSWERABLE"}
    # reference passages: unanswerable tasks have none, so the scripted model abstains only on them
    reference = run_mtrag(
        data_root / "mtrag",
        tmp_path / "b",
        make_bm25,
        generator=ScriptedGenerator(),
        domains=["fiqa"],
        answerability=["ANSWERABLE", "UNANSWERABLE"],
        passages="reference",
    )
    generation = reference["generation"]
    assert generation["abstention_rate_UNANSWERABLE"] == 1.0
    assert generation["abstention_rate_ANSWERABLE"] < 0.2  # a few answerable fiqa tasks have no reference passages
    assert generation["citation_precision"] == 1.0  # [1] is always a reference passage here


def test_mtrag_human_rewrites_and_argument_checks(data_root: Path, tmp_path: Path) -> None:
    metrics = run_mtrag(data_root / "mtrag", tmp_path, make_bm25, domains=["fiqa"], subset="human", rewrite="human")
    assert metrics["retrieval"]["fiqa"]["queries"] == 12
    assert any("human-rewrite subset" in w for w in metrics["warnings"])
    with pytest.raises(RankwiseError, match="human rewrites"):
        run_mtrag(data_root / "mtrag", tmp_path / "x", make_bm25, rewrite="human")
    with pytest.raises(RankwiseError, match="unknown answerability"):
        run_mtrag(data_root / "mtrag", tmp_path / "y", make_bm25, answerability=["SOMETIMES"])


def test_mtrag_per_label_limit(data_root: Path, tmp_path: Path) -> None:
    generator = ScriptedGenerator()
    metrics = run_mtrag(
        data_root / "mtrag",
        tmp_path,
        make_bm25,
        generator=generator,
        domains=["fiqa", "govt"],
        answerability=["ANSWERABLE", "UNANSWERABLE"],
        per_label_limit=3,
    )
    by_label = metrics["generation"]["by_answerability"]
    assert by_label["ANSWERABLE"]["tasks"] == 6 and by_label["UNANSWERABLE"]["tasks"] == 6
    assert generator.calls == 12 and metrics["tasks"] == 12
