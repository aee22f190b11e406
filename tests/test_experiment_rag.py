"""What ``rankwise rag`` needed from the experiment runner, used from YAML: HotpotQA's distractor setting and
sentence-per-line paragraphs, MT-RAG generation tasks with label filters, answers from the reference passages,
a rewrite cache, and one-line errors where an option does not apply. Real data, BM25; no model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.config.experiment import load_config
from rankwise.config.sections import DataConfig
from rankwise.data import read_run
from rankwise.data.hotpotqa import hotpotqa_inputs
from rankwise.data.mtrag import load_generation_tasks
from rankwise.errors import RankwiseError
from rankwise.experiment import answers, run_experiment
from rankwise.experiment.datasets import load_for_experiment, resolve_dataset
from rankwise.generate.citations import build_answer


def quiet(*_: object) -> None:
    return None


def config(tmp_path: Path, body: str, name: str = "exp"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}", encoding="utf-8")
    return load_config(path)


class FirstPassage:
    """Cites [1] with its first three words; records the passages it was shown."""

    def __init__(self) -> None:
        self.shown: dict[str, list[str]] = {}

    def generate_batch(self, requests):
        out = []
        for r in requests:
            self.shown[r.question] = [p.id for p in r.passages]
            raw = " ".join(r.passages[0].text.split()[:3]) + " [1]" if r.passages else "insufficient context"
            out.append(build_answer(raw, [p.id for p in r.passages]))
        return out


def test_distractor_setting_ranks_each_questions_own_paragraphs(tmp_path, hotpotqa_file):
    body = "data: {setting: distractor, sentence_lines: true, max_queries: 5}\nretrieve: {bm25: {k: 3}}\n"
    [out] = run_experiment(config(tmp_path, body), [str(hotpotqa_file)], tmp_path / "o", show_progress=False, log=quiet)
    run = read_run(out / "runs" / "bm25.trec")
    _, corpus, candidates = hotpotqa_inputs(hotpotqa_file)
    assert len(run) == 5 and all(sorted(docs) == sorted(candidates[q]) for q, docs in run.items())  # k=3 is moot
    # the open setting over the same data ranks the whole corpus: another key, another run
    [open_out] = run_experiment(
        config(tmp_path, body.replace("distractor", "open"), "open"), [str(hotpotqa_file)], tmp_path / "o",
        show_progress=False, log=quiet,
    )  # fmt: skip
    assert all(len(docs) == 3 for docs in read_run(open_out / "runs" / "bm25.trec").values())
    assert json.loads((out / "metrics.json").read_text())["counts"]["documents"] == len(corpus) == 994


def test_reference_passages_answer_mtrag_tasks_of_the_chosen_labels(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    generator = FirstPassage()
    monkeypatch.setattr(answers, "build_generator", lambda config, progress: generator)
    body = (
        "data: {answerability: [ANSWERABLE, PARTIAL], per_label_limit: 2}\nretrieve: {bm25: {k: 10}}\n"
        "generate: {kind: local, top_k: 1, passages: reference}\n"
    )
    [out] = run_experiment(config(tmp_path, body), ["mtrag-tasks:govt"], tmp_path / "o", show_progress=False, log=quiet)
    tasks = load_generation_tasks(data_root / "mtrag", ["govt"])
    expected = [t for t in tasks if t.answerability == "ANSWERABLE"][:2] + [
        t for t in tasks if t.answerability == "PARTIAL"
    ][:2]
    records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(t.id for t in expected)
    by_id = {t.id: t for t in expected}
    for record in records:  # every reference passage is shown (top_k applies to the ranking only)
        assert record["passages"] == [d.id for d in by_id[record["id"]].contexts]
    generate = json.loads((out / "metrics.json").read_text())["stages"]["generate"]
    assert set(generate["by_label"]) == {"ANSWERABLE", "PARTIAL"}
    assert generate["by_label"]["PARTIAL"]["questions"] == 2
    assert generate["metrics"]["citation_precision"] == 1.0  # [1] is a reference passage


def test_a_rewrite_cache_is_read_before_any_model_is_loaded(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    tasks = {t.id: t for t in load_generation_tasks(data_root / "mtrag", ["govt"])}
    queries = load_for_experiment(resolve_dataset("mtrag:govt"), DataConfig(max_queries=3)).queries
    cache = tmp_path / "rewrites.jsonl"
    cache.write_text(
        "".join(json.dumps({"id": q, "question": tasks[q].question, "rewrite": f"about {q}"}) + "\n" for q in queries)
    )
    body = f"data: {{max_queries: 3}}\nrewrite: {{strategy: llm, model: no-such-model, cache: {cache}}}\n"
    [out] = run_experiment(config(tmp_path, body + "retrieve: {bm25: {k: 5}}\n"), ["mtrag:govt"], tmp_path / "o",
                           show_progress=False, log=quiet)  # fmt: skip
    searched = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert [q["text"] for q in searched] == [f"about {q}" for q in queries]


@pytest.mark.parametrize(
    ("body", "dataset", "message"),
    [
        ("data: {setting: distractor}\n", "cranfield", "data.setting applies to HotpotQA files"),
        ("data: {sentence_lines: true}\n", "cranfield", "data.sentence_lines applies to HotpotQA files"),
        ("data: {answerability: [PARTIAL]}\n", "mtrag:govt", "apply to -d mtrag-tasks:DOMAIN, not mtrag-govt"),
    ],
)
def test_options_that_do_not_apply_are_one_line_errors(tmp_path, data_root, monkeypatch, body, dataset, message):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    experiment = config(tmp_path, body + "retrieve: {bm25: {k: 5}}\n")
    with pytest.raises(RankwiseError, match=message) as caught:
        run_experiment(experiment, [dataset], tmp_path / "o", show_progress=False, log=quiet)
    assert "\n" not in str(caught.value)
