"""MT-RAG data sets in ``rankwise run``: the human-rewrite subset with the ``human`` strategy, and the
answerability probe that keeps unjudged (unanswerable) tasks for the generate stage. Real data, BM25 only; the
generator is a stand-in that abstains on a fixed set of questions, so the abstention metrics are checkable."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from rankwise.config.experiment import load_config
from rankwise.data import mtrag
from rankwise.errors import RankwiseError
from rankwise.experiment import answers, run_experiment
from rankwise.generate.answer import Answer
from rankwise.generate.base import GenerationRequest


def quiet(*_: object) -> None:
    return None


def _config(tmp_path, body: str, overrides: Sequence[str] = ()):
    path = tmp_path / "exp.yaml"
    path.write_text(body, encoding="utf-8")
    return load_config(path, list(overrides))


def test_human_strategy_searches_with_the_benchmarks_rewrites(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    base = _config(tmp_path, "name: h\nrewrite: {strategy: last_turn}\nretrieve: {bm25: {k: 50}}\n")
    human = base.model_copy(update={"name": "h-human"})
    human.rewrite = human.rewrite.model_copy(update={"strategy": "human"})
    [last_out] = run_experiment(base, ["mtrag-human:govt"], tmp_path / "out", show_progress=False, log=quiet)
    [human_out] = run_experiment(human, ["mtrag-human:govt"], tmp_path / "out", show_progress=False, log=quiet)
    rewrites = mtrag.load_human_rewrites(data_root / "mtrag", "govt")
    searched = [json.loads(x) for x in (human_out / "queries.jsonl").read_text().splitlines()]
    assert len(searched) == 46 and all(q["text"] == rewrites[q["_id"]] for q in searched)
    metrics = json.loads((human_out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "mtrag-human-govt" and "POOLED" in metrics["warnings"][0]
    assert metrics["stages"]["bm25"]["queries"] == 46
    before = json.loads((last_out / "metrics.json").read_text())["stages"]["bm25"]["metrics"]
    assert before != metrics["stages"]["bm25"]["metrics"]

    with pytest.raises(RankwiseError, match=r"needs a data set that ships human rewrites .* not -d mtrag-govt"):
        run_experiment(human, ["mtrag:govt"], tmp_path / "out", show_progress=False, log=quiet)


class AbstainOn:
    """Abstains on the questions it is given, answers "yes [1]" otherwise."""

    def __init__(self, questions: set[str]) -> None:
        self.questions = questions

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        from rankwise.generate.citations import build_answer

        return [
            build_answer(
                "insufficient context" if r.question in self.questions else "yes [1]", [p.id for p in r.passages]
            )
            for r in requests
        ]


def test_answerability_probe_scores_abstention_by_label(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    probe = mtrag.load_answerability_probe(data_root / "mtrag", "fiqa")
    tasks = {t.id: t for t in mtrag.load_generation_tasks(data_root / "mtrag", ["fiqa"])}
    unanswerable = [q for q in probe.queries if tasks[q].answerability == "UNANSWERABLE"]
    answerable = [q for q in probe.queries if tasks[q].answerability == "ANSWERABLE"]
    assert len(unanswerable) == len(answerable) == 12
    # abstain on 9 of the 12 unanswerable questions and on 3 of the answerable ones
    abstain = {probe.queries[q].text for q in unanswerable[:9] + answerable[:3]}
    monkeypatch.setattr(answers, "build_generator", lambda config, progress: AbstainOn(abstain))
    config = _config(tmp_path, "name: a\nretrieve: {bm25: {k: 20}}\ngenerate: {kind: local, top_k: 3}\n")
    [out] = run_experiment(config, ["mtrag-answerability:fiqa"], tmp_path / "out", show_progress=False, log=quiet)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["queries"] == 24 and metrics["counts"]["judged_queries"] == 12
    assert metrics["stages"]["bm25"]["queries"] == 24  # every task retrieved, IR metrics on the judged ones
    generated = metrics["stages"]["generate"]["metrics"]
    assert metrics["stages"]["generate"]["questions"] == 24
    assert generated["abstention_rate_unanswerable"] == pytest.approx(9 / 12)
    assert generated["abstention_rate_answerable"] == pytest.approx(3 / 12)
    assert generated["abstention_gap"] == pytest.approx(0.5)
    assert generated["abstained"] == pytest.approx(12 / 24)
    assert "answerability probe" in metrics["warnings"][1]
