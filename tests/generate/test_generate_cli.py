"""``rankwise ask`` and ``rankwise rag`` end to end: real data, a BM25 index, the fake OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from rankwise.cli import generate
from rankwise.errors import RankwiseError


def invoke(args: list[str]):
    app = typer.Typer(pretty_exceptions_enable=False)
    generate.register(app)
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def hotpot_index(hotpotqa_file: Path, tmp_path_factory) -> Path:
    from rankwise.data import load_dataset
    from rankwise.retrieve.bm25 import BM25Retriever

    retriever = BM25Retriever(show_progress=False)
    retriever.index(load_dataset(hotpotqa_file).corpus)
    directory = tmp_path_factory.mktemp("index") / "bm25"
    retriever.save(directory)
    return directory


def test_ask_prints_the_answer_with_numbered_sources(fake_openai, hotpot_index, hotpotqa_file) -> None:
    fake_openai.default_content = "A vengeful spirit [1]."
    result = invoke(
        [
            "ask",
            "What is Alû in Akkadian mythology?",
            "--index",
            str(hotpot_index),
            "--corpus",
            str(hotpotqa_file),
            "--generator",
            fake_openai.url,
            "--generator-model",
            "fake",
            "--k",
            "3",
        ]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "A vengeful spirit [1]."
    assert "Sources:" in lines
    assert lines[lines.index("Sources:") + 1] == " *[1] Alû"
    assert sum(line.startswith((" *[", "  [")) for line in lines) == 3
    assert "Time: retrieve" in result.output
    prompt = fake_openai.requests[0]["body"]["messages"][1]["content"]
    assert "[1] Alû:" in prompt and "Question: What is Alû in Akkadian mythology?" in prompt


def test_ask_json_with_history(fake_openai, hotpot_index, hotpotqa_file) -> None:
    fake_openai.default_content = "insufficient context"
    result = invoke(
        [
            "ask",
            "And its mother?",
            "--history",
            "user: Who is Alû?",
            "--history",
            "agent: A demon.",
            "--index",
            str(hotpot_index),
            "--corpus",
            str(hotpotqa_file),
            "--generator",
            fake_openai.url,
            "--generator-model",
            "fake",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["answer"]["abstained"] is True
    assert len(payload["sources"]) == 5 and not any(s["cited"] for s in payload["sources"])
    prompt = fake_openai.requests[0]["body"]["messages"][1]["content"]
    assert "Conversation so far:\nuser: Who is Alû?\nagent: A demon." in prompt


def test_rag_hotpotqa_with_http_generator(fake_openai, hotpotqa_file, tmp_path) -> None:
    fake_openai.default_content = "yes [2]"
    out = tmp_path / "run"
    result = invoke(
        [
            "rag",
            "--dataset",
            "hotpotqa",
            str(hotpotqa_file),
            "--out",
            str(out),
            "--generator",
            fake_openai.url,
            "--generator-model",
            "fake",
            "--limit",
            "4",
            "--template",
            "short",
        ]
    )
    assert result.exit_code == 0, result.output
    folder = out / "hotpotqa_train"  # one experiment folder per data set
    metrics = json.loads((folder / "metrics.json").read_text())
    generate = metrics["stages"]["generate"]
    assert generate["questions"] == 4 and generate["metrics"]["cited"] == 1.0
    assert "answers_with_citations" in result.output
    assert yaml.safe_load((folder / "config.yaml").read_text())["generate"]["template"] == "short"
    assert len((folder / "answers.jsonl").read_text().splitlines()) == 4
    assert len(fake_openai.requests) == 4


def test_rag_mtrag_retrieval_only_says_pooled(data_root, tmp_path) -> None:
    out = tmp_path / "mt"
    result = invoke(
        [
            "rag",
            "--dataset",
            "mtrag",
            str(data_root / "mtrag"),
            "--out",
            str(out),
            "--generator",
            "none",
            "--domain",
            "fiqa",
            "--rewrite",
            "full_history",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "POOLED EVALUATION" in result.output
    metrics = json.loads((out / "mtrag-fiqa" / "metrics.json").read_text())
    assert "POOLED EVALUATION" in metrics["warnings"][0] and metrics["stages"]["bm25"]["queries"] == 58


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "squad"], "--dataset must be hotpotqa, mtrag or open-qa"),
        (["--dataset", "hotpotqa", "--retriever", "magic", "--generator", "none"], "--retriever must be one of"),
        (["--dataset", "hotpotqa", "--reranker", "cross-encoder", "--generator", "none"], "needs --reranker-model"),
        (["--dataset", "hotpotqa", "--generator", "http://127.0.0.1:9/v1"], "needs the served model"),
        (["--dataset", "hotpotqa", "--generator", "smollm2", "--generator-model", "x"], "http(s) --generator only"),
    ],
)
def test_rag_argument_errors(args, message, hotpotqa_file, tmp_path) -> None:
    result = invoke(["rag", *args, str(hotpotqa_file), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, RankwiseError)
    assert message in str(result.exception)
