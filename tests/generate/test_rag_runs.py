"""Whole-data-set runs (``rankwise rag``'s experiments, rankwise.experiment.rag) on real HotpotQA and MT-RAG files:
BM25 and a scripted generator, run by the experiment runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.config.sections import BM25Config, LocalGenerateConfig, RewriteConfig
from rankwise.data import read_run
from rankwise.data.hotpotqa import hotpotqa_inputs, load_hotpotqa
from rankwise.data.mtrag import load_generation_tasks
from rankwise.errors import RankwiseError
from rankwise.experiment import answers
from rankwise.experiment.cache import Chunks
from rankwise.experiment.rag import hotpotqa_experiment, mtrag_experiment, run_rag
from rankwise.generate.citations import build_answer


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


def quiet(*_: object) -> None:
    return None


def stages(monkeypatch, generator=None, rewrite: str | None = None, **generate):
    """BM25, plus (with ``generator``) a generate stage whose generator is the scripted one."""
    chosen = {"retrieve": {"bm25": BM25Config()}}
    if generator is not None:
        monkeypatch.setattr(answers, "build_generator", lambda config, progress: generator)
        chosen["generate"] = LocalGenerateConfig(**generate)
    if rewrite is not None:
        chosen["rewrite"] = RewriteConfig(strategy=rewrite)
    return chosen


def hotpot(path, out, parts, setting="distractor", limit=None, name="hotpot"):
    config, sources = hotpotqa_experiment(path, name, parts, setting, limit)
    summary, [folder] = run_rag("hotpotqa", config, sources, out, log=quiet, show_progress=False)
    return summary, folder


def mt(path, out, parts, name="mt", **options):
    config, sources = mtrag_experiment(path, name, parts, **options)
    return run_rag("mtrag", config, sources, out, log=quiet, show_progress=False)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hotpotqa_inputs_sentence_per_line(hotpotqa_file: Path) -> None:
    examples, corpus, candidates = hotpotqa_inputs(hotpotqa_file, limit=3)
    assert len(examples) == 3 and len(corpus) == 994
    first = examples[0]
    assert len(candidates[first.id]) == 10
    doc = corpus["Alû"]
    sentences = dict(first.context)["Alû"]
    assert doc.text.split("\n") == [" ".join(s.split()) for s in sentences]


def test_hotpotqa_retrieval_only(hotpotqa_file: Path, tmp_path: Path, monkeypatch) -> None:
    summary, folder = hotpot(hotpotqa_file, tmp_path, stages(monkeypatch))
    retrieval = summary["retrieval"]
    assert summary["questions"] == 100 and "qa" not in summary
    assert 0.0 < retrieval["both_gold@2"] <= retrieval["both_gold@5"] <= 1.0
    assert retrieval["gold_recall@2"] <= retrieval["gold_recall@5"]
    run = read_run(folder / "runs" / "bm25.trec")
    assert len(run) == 100
    # distractor setting: the ranking holds exactly the question's own paragraphs (10, or 4 for one question)
    _, _, candidates = hotpotqa_inputs(hotpotqa_file)
    assert all(sorted(docs) == sorted(candidates[qid]) for qid, docs in run.items())
    assert (folder / "runs" / "bm25.trec").read_text().count("\n") == 994
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "generate" not in metrics["stages"] and metrics["stages"]["bm25"]["metrics"]["R@2"] == pytest.approx(
        retrieval["gold_recall@2"]
    )
    assert not (folder / "answers.jsonl").exists() and not (folder / ".partial").exists()


def test_hotpotqa_with_a_generator_scores_citations(hotpotqa_file: Path, tmp_path: Path, monkeypatch) -> None:
    generator = ScriptedGenerator()
    summary, folder = hotpot(hotpotqa_file, tmp_path, stages(monkeypatch, generator, top_k=3), limit=5)
    qa = summary["qa"]
    assert generator.calls == 5
    assert qa["answers_with_citations"] == 1.0 and qa["abstention_rate"] == 0.0
    assert qa["dropped_citations"] == 1.0  # every answer cites [9] of 3 passages
    records = lines(folder / "answers.jsonl")
    first = records[0]
    cited = first["citations"][0]["doc_id"]
    assert cited == first["passages"][0] and len(first["passages"]) == 3
    gold_titles = {
        title for title, _ in next(e for e in load_hotpotqa(hotpotqa_file) if e.id == first["id"]).supporting_facts
    }
    expected_precision = 1.0 if cited in gold_titles else 0.0
    per_query = json.loads((folder / "per_query.json").read_text())["generate"]
    assert per_query["citation_precision"][first["id"]] == expected_precision
    assert per_query["sp_paragraph_recall"][first["id"]] == expected_precision / 2
    assert qa["citation_precision"] == pytest.approx(sum(per_query["citation_precision"].values()) / 5)
    assert set(summary["latency_per_question_s"]) == {"bm25_s", "generate_s", "total_s"}


def test_killed_run_resumes_and_other_settings_never_reuse_answers(
    hotpotqa_file: Path, tmp_path: Path, monkeypatch
) -> None:
    first = ScriptedGenerator()
    _, reference = hotpot(hotpotqa_file, tmp_path / "a", stages(monkeypatch, first, checkpoint_every=2), limit=4)

    class Killed(BaseException):
        pass

    save = Chunks.save

    def die_on_second(self: Chunks, index: int, value: object) -> None:
        if index == 1:
            raise Killed
        save(self, index, value)

    monkeypatch.setattr(Chunks, "save", die_on_second)
    with pytest.raises(Killed):
        hotpot(hotpotqa_file, tmp_path / "b", stages(monkeypatch, ScriptedGenerator(), checkpoint_every=2), limit=4)
    monkeypatch.setattr(Chunks, "save", save)
    second = ScriptedGenerator()
    _, folder = hotpot(hotpotqa_file, tmp_path / "b", stages(monkeypatch, second, checkpoint_every=2), limit=4)
    assert second.calls == 2  # the first two questions came from the saved chunk
    assert (folder / "answers.jsonl").read_text() == (reference / "answers.jsonl").read_text()
    # other settings in the same folder: everything they change is computed again, nothing is mixed in
    third = ScriptedGenerator()
    _, folder = hotpot(hotpotqa_file, tmp_path / "b", stages(monkeypatch, third, checkpoint_every=2, top_k=2), limit=4)
    assert third.calls == 4 and all(len(r["passages"]) == 2 for r in lines(folder / "answers.jsonl"))


def test_mtrag_pooled_retrieval_one_domain(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    summary, [folder] = mt(data_root / "mtrag", tmp_path, stages(monkeypatch, rewrite="full_history"), domains=["fiqa"])
    assert summary["pooled_evaluation"] is True
    fiqa = summary["retrieval"]["fiqa"]
    assert fiqa["queries"] == 58 and 0.0 < fiqa["nDCG@10"] <= 1.0
    assert summary["retrieval"]["all"]["queries"] == 58
    saved = json.loads((folder / "metrics.json").read_text())
    assert "POOLED EVALUATION" in saved["warnings"][0] and saved["dataset"]["name"] == "mtrag-fiqa"
    searched = lines(folder / "queries.jsonl")[0]
    task = next(t for t in load_generation_tasks(data_root / "mtrag", ["fiqa"]) if t.id == searched["_id"])
    assert searched["text"].endswith(task.question) and searched["_id"] in read_run(folder / "runs" / "bm25.trec")


def test_mtrag_abstention_by_answerability(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    labels = ["ANSWERABLE", "UNANSWERABLE"]
    parts = stages(monkeypatch, ScriptedGenerator(abstain=True))
    summary, _ = mt(data_root / "mtrag", tmp_path, parts, name="a", domains=["fiqa"], answerability=labels)
    generation = summary["generation"]
    assert generation["abstention_rate_ANSWERABLE"] == 1.0
    assert generation["abstention_rate_UNANSWERABLE"] == 1.0
    assert generation["abstention_gap_UNANSWERABLE_minus_ANSWERABLE"] == 0.0
    assert set(generation["by_answerability"]) == {"ANSWERABLE", "UNANSWERABLE"}
    # reference passages: unanswerable tasks have none, so the scripted model abstains only on them
    parts = stages(monkeypatch, ScriptedGenerator(), passages="reference")
    reference, _ = mt(data_root / "mtrag", tmp_path, parts, name="b", domains=["fiqa"], answerability=labels)
    generation = reference["generation"]
    assert generation["abstention_rate_UNANSWERABLE"] == 1.0
    assert generation["abstention_rate_ANSWERABLE"] < 0.2  # a few answerable fiqa tasks have no reference passages
    assert generation["citation_precision"] == 1.0  # [1] is always a reference passage here


def test_mtrag_human_rewrites_and_argument_checks(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    parts = stages(monkeypatch, rewrite="human")
    summary, _ = mt(data_root / "mtrag", tmp_path, parts, domains=["fiqa"], subset="human")
    assert summary["retrieval"]["fiqa"]["queries"] == 12
    assert any("human-rewrite subset" in w for w in summary["warnings"])
    with pytest.raises(RankwiseError, match="human rewrites"):
        mt(data_root / "mtrag", tmp_path, parts, name="x", domains=["fiqa"])
    with pytest.raises(RankwiseError, match="unknown answerability"):
        mt(data_root / "mtrag", tmp_path, stages(monkeypatch), name="y", answerability=["SOMETIMES"])


def test_mtrag_per_label_limit(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    generator = ScriptedGenerator()
    summary, folders = mt(
        data_root / "mtrag",
        tmp_path,
        stages(monkeypatch, generator),
        domains=["fiqa", "govt"],
        answerability=["ANSWERABLE", "UNANSWERABLE"],
        per_label_limit=3,
    )
    by_label = summary["generation"]["by_answerability"]
    assert by_label["ANSWERABLE"]["tasks"] == 6 and by_label["UNANSWERABLE"]["tasks"] == 6
    assert generator.calls == 12 and summary["tasks"] == 12
    assert [f.name for f in folders] == ["mtrag-tasks-fiqa", "mtrag-tasks-govt"]
