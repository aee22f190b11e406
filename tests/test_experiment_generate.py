"""The generate and rewrite stages of ``rankwise run``: answers.jsonl, QA metrics checked by hand, resuming, and
MT-RAG query rewriting. The generator is a stand-in (the real ones are tested in tests/generate); the stage code,
the gold data and the metrics are real."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from rankwise.config.experiment import load_config
from rankwise.data import load_dataset, read_run
from rankwise.data.hotpotqa import load_hotpotqa
from rankwise.experiment import answers, run_experiment, stable_view
from rankwise.experiment.cache import Chunks
from rankwise.generate.answer import Answer, Citation
from rankwise.generate.base import GenerationRequest
from rankwise.types import Document


class EchoGenerator:
    """Answers every other question with its gold answer, always citing passage [1]."""

    def __init__(self, golds: dict[str, str]) -> None:
        self.by_question = golds
        self.calls = 0

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        out = []
        for request in requests:
            self.calls += 1
            gold = self.by_question[request.question]
            right = sorted(self.by_question).index(request.question) % 2 == 0
            text = f"{gold if right else 'no idea'} [1]"
            out.append(Answer(text=text, citations=(Citation(1, request.passages[0].id),), raw=text))
        return out


def quiet(*_: object) -> None:
    return None


CONFIG = """\
name: hotpot
data: {max_queries: 6}
retrieve: {bm25: {k: 20}}
generate: {kind: local, top_k: 3, checkpoint_every: 2}
"""


@pytest.fixture()
def echo(hotpotqa_file: Path, monkeypatch: pytest.MonkeyPatch) -> EchoGenerator:
    chosen = list(load_dataset(hotpotqa_file).judged_queries())[:6]  # data: {max_queries: 6}
    examples = {e.id: e for e in load_hotpotqa(hotpotqa_file)}
    generator = EchoGenerator({examples[q].question: examples[q].answer or "" for q in chosen})
    monkeypatch.setattr(answers, "build_generator", lambda config, progress: generator)
    return generator


def test_generate_stage_writes_answers_and_hand_checkable_qa_metrics(tmp_path, hotpotqa_file, echo):
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    [out] = run_experiment(load_config(path), [str(hotpotqa_file)], tmp_path / "out", show_progress=False, log=quiet)
    records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    dataset = load_dataset(hotpotqa_file)
    ids = list(dataset.judged_queries())[:6]
    assert [r["id"] for r in records] == ids and echo.calls == 6
    run = read_run(out / "runs" / "bm25.trec")
    assert all(r["passages"] == list(run[r["id"]])[:3] for r in records)

    metrics = json.loads((out / "metrics.json").read_text())
    qa = metrics["stages"]["generate"]
    assert qa["from"] == "bm25" and qa["questions"] == 6
    # by hand: every other question (sorted by text) is answered right -> EM 3/6; the citation is passage [1],
    # precise when the top document is a supporting paragraph, recalling 1 of the question's 2 paragraphs then.
    top_is_gold = [next(iter(run[q])) in dataset.qrels[q] for q in ids]
    assert qa["metrics"]["em"] == pytest.approx(0.5)
    assert qa["metrics"]["citation_precision"] == pytest.approx(sum(top_is_gold) / 6)
    recall = [(1 / len(dataset.qrels[q]) if hit else 0.0) for q, hit in zip(ids, top_is_gold, strict=True)]
    assert qa["metrics"]["citation_recall"] == pytest.approx(sum(recall) / 6)
    assert qa["metrics"]["cited"] == 1.0 and qa["metrics"]["abstained"] == 0.0
    assert qa["defined"]["em"] == 6
    per_query = json.loads((out / "per_query.json").read_text())
    assert sorted(per_query["generate"]["em"].values()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert metrics["stages"]["generate"]["timing"]["questions"] == 6
    # the report shows the answers table next to the rankings; compare can test QA metrics per question
    from rankwise.experiment import load_output
    from rankwise.experiment.outputs import load_systems
    from rankwise.experiment.report import build_report

    page = build_report([load_output(out)], examples=0)
    assert "<h3>Answers</h3>" in page and "citation_precision" in page
    [system] = load_systems([f"{out}:generate"])
    assert system.per_query("em") == per_query["generate"]["em"]


def test_killed_generation_resumes_its_answered_chunks(tmp_path, hotpotqa_file, echo, monkeypatch):
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path)
    [reference] = run_experiment(config, [str(hotpotqa_file)], tmp_path / "a", show_progress=False, log=quiet)

    class Killed(BaseException):
        pass

    original = Chunks.save

    def die_on_second(self: Chunks, index: int, value: object) -> None:
        if index == 1:
            raise Killed
        original(self, index, value)

    monkeypatch.setattr(Chunks, "save", die_on_second)
    with pytest.raises(Killed):
        run_experiment(config, [str(hotpotqa_file)], tmp_path / "b", show_progress=False, log=quiet)
    monkeypatch.setattr(Chunks, "save", original)
    echo.calls = 0
    [out] = run_experiment(config, [str(hotpotqa_file)], tmp_path / "b", show_progress=False, log=quiet)
    assert echo.calls == 4  # the first two questions came from the saved chunk
    assert (out / "answers.jsonl").read_text() == (reference / "answers.jsonl").read_text()
    resumed = json.loads((out / "metrics.json").read_text())
    assert stable_view(resumed) == stable_view(json.loads((reference / "metrics.json").read_text()))
    assert resumed["stages"]["generate"]["timing"]["chunks_resumed"] == 1
    # nothing changed: nothing is generated again
    echo.calls = 0
    run_experiment(config, [str(hotpotqa_file)], tmp_path / "b", show_progress=False, log=quiet)
    assert echo.calls == 0


def test_question_scores_by_hand():
    gold = answers.Gold(answers=("Paris",), evidence=("d1", "d2"), answerable=True)
    corpus = {"d1": _doc("d1", "Paris is the capital of France."), "d3": _doc("d3", "Lyon")}
    record = {
        "id": "q",
        "passages": ["d1", "d3"],
        "text": "It is Paris [1] [2]",
        "citations": [{"number": 1, "doc_id": "d1"}, {"number": 2, "doc_id": "d3"}],
        "abstained": False,
        "dropped_citations": 1,
    }
    scores = answers.question_scores(record, gold, corpus)
    # "it is paris" vs "paris": precision 1/3, recall 1 -> F1 = 2 * (1/3) / (4/3) = 0.5
    assert scores["em"] == 0.0 and scores["f1"] == pytest.approx(0.5)
    assert scores["answer_in_passages"] == 1.0
    assert scores["citation_precision"] == 0.5 and scores["citation_recall"] == 0.5
    assert scores["support_f1"] == 0.5 and scores["dropped_citations"] == 1.0
    unanswerable = answers.question_scores({**record, "abstained": True}, answers.Gold(answerable=False), corpus)
    assert unanswerable["em"] is None and unanswerable["citation_precision"] is None
    assert unanswerable["abstained"] == 1.0


def _doc(doc_id: str, text: str) -> Document:
    return Document(doc_id, "", text)


def test_mtrag_rewrite_strategies(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    path = tmp_path / "exp.yaml"
    path.write_text("name: mt\nrewrite: {strategy: last_turn}\nretrieve: {bm25: {k: 50}}\n", encoding="utf-8")
    base = load_config(path)
    full = load_config(path, ["rewrite.strategy=full_history", "name=mt-full"])
    [last_out] = run_experiment(base, ["mtrag:govt"], tmp_path / "out", show_progress=False, log=quiet)
    [full_out] = run_experiment(full, ["mtrag:govt"], tmp_path / "out", show_progress=False, log=quiet)
    last_queries = [json.loads(x) for x in (last_out / "queries.jsonl").read_text().splitlines()]
    full_queries = [json.loads(x) for x in (full_out / "queries.jsonl").read_text().splitlines()]
    assert [q["_id"] for q in last_queries] == [q["_id"] for q in full_queries]
    with_history = [(a, b) for a, b in zip(last_queries, full_queries, strict=True) if a["history"]]
    assert with_history and all(
        b["text"].endswith(a["text"]) and len(b["text"]) > len(a["text"]) for a, b in with_history
    )
    metrics = json.loads((full_out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "mtrag-govt" and "POOLED" in metrics["warnings"][0]
    assert "rewrite" in metrics["latency_s"] and "rewrite" not in metrics["stages"]  # a stage, but not a ranking
    last_metrics = json.loads((last_out / "metrics.json").read_text())
    assert last_metrics["stages"]["bm25"]["metrics"] != metrics["stages"]["bm25"]["metrics"]
