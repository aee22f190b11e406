"""``rankwise serve`` as a command: an experiment config served exactly as it was measured, flag errors, and a
SIGTERM that lets the request in flight finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from serve_helpers import DOCS, free_port

from rankwise.cli import main
from rankwise.errors import RankwiseError
from rankwise.serve.app import create_app
from rankwise.serve.parts import from_config
from rankwise.serve.service import Service

SRC = str(Path(__file__).resolve().parents[2] / "src")
QUERIES = {"q1": "why do cats purr", "q2": "which animals sing", "q3": "where do fish live"}
CONFIG = """\
name: toy-hybrid
datasets: [{data}]
retrieve:
  bm25: {{kind: bm25, k: 6}}
  bm25-flat: {{kind: bm25, k: 5, k1: 0.9, b: 0.4}}
fuse: {{method: rrf, k: 60, depth: 6}}
rerank: {{kind: cross-encoder, model: {model}, top_n: 4, interpolate: 0.3}}
"""


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-beir")
    lines = [json.dumps({"_id": d.id, "title": d.title, "text": d.text}) for d in DOCS]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = [json.dumps({"_id": qid, "text": text}) for qid, text in QUERIES.items()]
    (root / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t1\nq3\td3\t1\n")
    return root


def test_a_config_is_served_as_the_experiment_measured_it(beir, tmp_path, tiny_cross_encoder_dir):
    from rankwise.config.experiment import load_config
    from rankwise.data import read_run
    from rankwise.experiment import run_experiment

    config = tmp_path / "toy.yaml"
    config.write_text(CONFIG.format(data=beir, model=tiny_cross_encoder_dir), encoding="utf-8")
    out = tmp_path / "outputs"
    [folder] = run_experiment(load_config(config), [], out, show_progress=False, log=lambda m: None)
    measured = read_run(folder / "runs" / "rerank.trec")
    first_stage = read_run(folder / "runs" / "fuse.trec")
    served = from_config(config, None, [], out, log=lambda m: None)
    assert served.info["stages"] == ["bm25", "bm25-flat", "fuse", "rerank"]
    assert served.max_k == 4 and served.interpolate == 0.3
    with TestClient(create_app(Service(served), mcp=False)) as client:
        health = client.get("/healthz").json()
        assert health["experiment"] == "toy-hybrid" and health["dataset"] == beir.name
        for qid, text in QUERIES.items():
            results = client.post("/v1/search", json={"query": text, "k": 4}).json()["results"]
            assert [r["id"] for r in results] == list(measured[qid])
            assert [r["score"] for r in results] == pytest.approx(list(measured[qid].values()), abs=1e-4)
            assert [r["first_stage_rank"] for r in results] == [
                list(first_stage[qid]).index(r["id"]) + 1 for r in results
            ]
    # the index the experiment built was reused, not rebuilt
    assert len(list((out / ".indexes").iterdir())) == 2


def test_a_config_whose_reranker_was_never_trained_is_refused(beir, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        CONFIG.format(data=beir, model="minilm").replace(
            "interpolate: 0.3}", f"train: {{data: {beir}, train_split: test, dev_queries: 1}}}}"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RankwiseError, match="has not been trained"):
        from_config(config, None, [], tmp_path / "outputs", log=lambda m: None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "serve a pipeline"),
        (["--config", "x.yaml", "--index", "i"], "either --config or --index"),
        (["--index", "i", "--corpus", "c", "-d", "scifact"], "-d and --set go with --config"),
        (["--index", "i", "--corpus", "c", "--set", "rerank.top_n=5"], "-d and --set go with --config"),
        (["--index", "i", "--corpus", "c", "--k", "0"], "--k"),
        (["--index", "{index}", "--corpus", "{corpus}", "--api-key-env", "RANKWISE_TEST_UNSET"], "RANKWISE_TEST_UNSET"),
        (["--index", "{index}", "--corpus", "{corpus}", "--reranker", "cross-encoder"], "needs --reranker-model"),
        (["--index", "{index}", "--corpus", "{corpus}", "--max-queue", "0"], "--max-queue"),
        # beside --config a pipeline flag would be silently ignored: refused, naming it
        (["--config", "x.yaml", "--reranker", "llm"], "--reranker goes with --index/--corpus"),
        (["--config", "x.yaml", "--k", "3"], "--k goes with --index/--corpus"),
        (["--config", "x.yaml", "--precision", "bf16"], "--precision goes with --index/--corpus"),
        (["--index", "{index}", "--corpus", "{corpus}", "--device", "cpu"], "--device applies to a local model"),
        (["--index", "{index}", "--corpus", "{corpus}", "--precision", "bf16"], "--precision applies to a local"),
    ],
)
def test_serve_flag_mistakes_are_one_line_errors(toy, capsys, args, message):
    filled = [a.format(index=toy["index"], corpus=toy["corpus"]) for a in args]
    assert main(["serve", *filled]) == 2
    assert message in capsys.readouterr().err


def test_sigterm_lets_the_request_in_flight_finish(toy, scripted_llm):
    port = free_port()
    args = ["serve", "--index", str(toy["index"]), "--corpus", str(toy["corpus"]), "--port", str(port)]
    args += ["--generator", scripted_llm.url, "--generator-model", "scripted", "--api-key-env", "RANKWISE_TEST_KEY"]
    env = {**os.environ, "PYTHONPATH": SRC, "RANKWISE_TEST_KEY": "k"}
    server = subprocess.Popen([sys.executable, "-m", "rankwise", *args], env=env, stderr=subprocess.PIPE, text=True)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        scripted_llm.delay = 1.5
        reply: dict = {}

        def ask() -> None:
            answer = httpx2.post(f"{url}/v1/ask", json={"question": "why do cats purr"}, headers=headers, timeout=30)
            reply.update(status=answer.status_code, body=answer.json())

        asking = threading.Thread(target=ask)
        asking.start()
        while not scripted_llm.requests:  # the question is with the model now
            time.sleep(0.02)
        server.send_signal(signal.SIGTERM)
        asking.join(timeout=30)
        assert reply["status"] == 200 and reply["body"]["answer"] == "Cats purr when they [1]."
        # uvicorn re-raises the signal once it has shut down, so a process manager sees a SIGTERM exit
        assert server.wait(timeout=30) == -signal.SIGTERM
        with pytest.raises(httpx2.TransportError):
            httpx2.get(f"{url}/healthz", timeout=2)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stderr.close()


def test_flag_values_a_section_refuses_name_the_flag(toy):
    from rankwise.serve.parts import from_flags

    with pytest.raises(RankwiseError, match="--max-new-tokens: "):
        from_flags([toy["index"]], toy["corpus"], generator="http://127.0.0.1:9/v1", generator_model="m",
                   max_new_tokens=0, log=print)  # fmt: skip
