"""Issue 20: a failing re-run keeps the last good results, two data sets of one folder name are refused,
reranker ties keep the first-stage order, and the shipped DDP command (no ``device`` key) really runs DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankwise.types import Document, Query

# ------------------------------------------------------------------------------- 1. a failing re-run


def rankwise(*args: object) -> int:
    from rankwise.cli import main

    return main([str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


CONFIG = """\
name: exp
retrieve:
  bm25: {{k: 50}}
rerank: {{kind: cross-encoder, model: '{model}', top_n: 5}}
data: {{max_queries: 20}}
evaluate: {{metrics: [nDCG@10]}}
"""


@pytest.fixture()
def good_run(tmp_path: Path, cranfield_dir: Path, tiny_cross_encoder_dir: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """`rankwise run -e cfg.yaml -d sf --out o` once; returns (config file, output folder, its files)."""
    config = tmp_path / "cfg.yaml"
    config.write_text(CONFIG.format(model=tiny_cross_encoder_dir), encoding="utf-8")
    (tmp_path / "sf").symlink_to(cranfield_dir.resolve(), target_is_directory=True)
    assert rankwise("run", "-e", config, "-d", tmp_path / "sf", "--out", tmp_path / "o", "-q") == 0
    out = tmp_path / "o" / "exp" / "sf"
    return config, out, snapshot(out)


def test_a_failing_rerun_keeps_the_last_good_output_and_is_never_read_as_one(good_run, tmp_path, capsys):
    from rankwise.errors import RankwiseError
    from rankwise.experiment import load_output
    from rankwise.experiment.outputs import load_outputs

    config, out, before = good_run
    # the same run with an override that makes the rerank stage fail
    failing = ["--set", f"rerank.model={tmp_path / 'no-such-model'}"]
    assert rankwise("run", "-e", config, "-d", tmp_path / "sf", "--out", tmp_path / "o", "-q", *failing) == 2
    assert "cannot load cross-encoder" in capsys.readouterr().err
    assert snapshot(out) == before  # metrics.json, config.yaml, runs/: all as the good run left them
    staging = out.with_name("sf.partial")
    assert staging.is_dir() and not (staging / "metrics.json").exists()
    assert "no-such-model" in (staging / "config.yaml").read_text()  # the failed run's files stay apart
    # readers see the last good output only, never the unfinished one
    assert [o.path for o in load_outputs([tmp_path / "o" / "exp"])] == [out]
    assert load_output(out).metrics == json.loads(before["metrics.json"])
    with pytest.raises(RankwiseError, match=r"sf\.partial: the working folder of an unfinished run.*exp/sf$"):
        load_output(staging)
    assert rankwise("compare", out, out) == 0
    capsys.readouterr()


def test_a_successful_rerun_replaces_the_output_and_reuses_the_good_stages(good_run, tmp_path, capsys):
    config, out, before = good_run
    failing = ["--set", f"rerank.model={tmp_path / 'no-such-model'}"]
    assert rankwise("run", "-e", config, "-d", tmp_path / "sf", "--out", tmp_path / "o", "-q", *failing) == 2
    capsys.readouterr()
    # a good change: the retriever comes from the last good output (not recomputed), rerank is computed anew
    assert rankwise("run", "-e", config, "-d", tmp_path / "sf", "--out", tmp_path / "o", "--set", "rerank.top_n=3") == 0
    logs = capsys.readouterr().err
    assert "bm25: unchanged, reused runs/bm25.trec" in logs and "rerank: computed" in logs
    after = snapshot(out)
    assert after["runs/bm25.trec"] == before["runs/bm25.trec"]
    assert after["runs/rerank.trec"] != before["runs/rerank.trec"]
    assert "top_n: 3" in after["config.yaml"].decode()
    assert json.loads(after["metrics.json"])["config_key"] != json.loads(before["metrics.json"])["config_key"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["sf"]  # no staging folder, nothing replaced left
    assert not any(name.startswith(".partial") or ".replaced" in name for name in after)


def test_a_run_killed_between_the_two_renames_is_repaired_by_the_next(good_run, tmp_path, monkeypatch, capsys):
    from rankwise.experiment import load_output

    config, out, before = good_run
    staging = out.with_name("sf.partial")

    class Killed(BaseException):
        pass

    rename = Path.rename

    def die_on_the_second_rename(self: Path, target: Path) -> Path:
        if self == staging:
            raise Killed  # the old output has moved aside, the new one is not in place yet
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", die_on_the_second_rename)
    with pytest.raises(Killed):
        rankwise("run", "-e", config, "-d", tmp_path / "sf", "--out", tmp_path / "o", "-q", "--set", "rerank.top_n=3")
    monkeypatch.undo()
    assert not out.exists() and (staging / ".replaced" / "metrics.json").is_file()
    # the next run puts the good output back first; a run of the old config then changes nothing in it
    assert rankwise("run", "-e", config, "-d", tmp_path / "sf", "--out", tmp_path / "o", "-q") == 0
    after = snapshot(out)
    assert after["metrics.json"] == before["metrics.json"] and after["config.yaml"] == before["config.yaml"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["sf"]
    assert load_output(out).final_stage == "rerank"
    capsys.readouterr()


# --------------------------------------------------------------------- 2. two data sets, one folder name


def test_two_data_sets_with_one_folder_name_are_refused_before_any_work(tmp_path, cranfield_dir, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("name: exp\nretrieve: {bm25: {}}\n", encoding="utf-8")
    for where in ("A", "B"):
        (tmp_path / where).mkdir()
        (tmp_path / where / "sf").symlink_to(cranfield_dir.resolve(), target_is_directory=True)
    a, b = tmp_path / "A" / "sf", tmp_path / "B" / "sf"
    assert rankwise("run", "-e", config, "-d", a, "-d", b, "--out", tmp_path / "o", "-q") == 2
    error = capsys.readouterr().err.replace("\n", "")
    assert f"-d {a} and -d {b} would both write {tmp_path / 'o' / 'exp' / 'sf'}" in error
    assert "give each data set a folder name of its own" in error and "Traceback" not in error
    assert not (tmp_path / "o").exists()  # nothing run, nothing written
    assert rankwise("run", "-e", config, "-d", a, "-d", a, "--out", tmp_path / "o", "-q") == 2
    assert "is given twice" in capsys.readouterr().err
    (tmp_path / "B" / "x.partial").symlink_to(cranfield_dir.resolve(), target_is_directory=True)
    assert rankwise("run", "-e", config, "-d", tmp_path / "B" / "x.partial", "--out", tmp_path / "o", "-q") == 2
    assert "clashes with the staging folders" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ 4. DDP


@pytest.fixture(scope="module")
def tiny_encoder(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from rankwise.retrieve.encode import build_random_encoder

    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


def test_ddp_without_a_device_key_and_with_a_dev_set_runs_one_distributed_training(
    tiny_encoder: str, tmp_path: Path
) -> None:
    # As the shipped configs/train/retriever-scifact.yaml: no `device` key, a held-out dev set. On a machine
    # without CUDA this trained two separate copies (parallel_mode != DISTRIBUTED) and rank 1 crashed on
    # KeyError 'eval_dev_ndcg@10'.
    triples = tmp_path / "triples.tsv"
    topics = ["cells", "genes", "viruses", "drugs", "brains", "blood", "tumours", "trials"]
    triples.write_text(
        "".join(
            f"about {t} {i}\t{t} text number {i}\t{topics[(k + 3) % 8]} other {i}\n"
            for k, t in enumerate(topics)
            for i in range(4)
        )
    )
    out = tmp_path / "out"
    settings = {"output_dir": str(out), "triples": str(triples), "model": tiny_encoder, "dev_queries": 4}
    settings |= {"num_negatives": 1, "batch_size": 4, "max_steps": 2, "eval_steps": 2, "lr_head": 0.01}
    settings |= {"max_seq_length": 64, "threads": 1, "diagnostics_sample": 16, "logging_steps": 1}
    assert "device" not in settings
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(settings))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    command += ["--master-port", str(port), "-m", "rankwise.train.retriever", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, as on this machine
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8 and summary["steps"] == 2
    assert summary["replicas_identical"] is True
    assert summary["dev_queries"] == 4 and summary["best_checkpoint"] is not None
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "eval_dev_ndcg@10" in row] == [2]


# ---------------------------------------------------------------------------------------------- 3. ties

# Two passages no reranker can tell apart (same text); the first stage ranks '136' above '1046', and as strings
# '1046' < '136', so an id tie-break flips them.
TWINS = {
    "136": Document("136", "Vitamin D", "Vitamin D deficiency is common in the elderly."),
    "1046": Document("1046", "Vitamin D", "Vitamin D deficiency is common in the elderly."),
    "7": Document("7", "Zinc", "Zinc supplements and the common cold."),
}
FIRST_STAGE = {"q": {"136": 9.0, "1046": 8.0, "7": 7.0}}
QUERIES = {"q": Query("q", "vitamin d deficiency")}


class _Server:
    """A local rerank API (Cohere/Jina shape) that gives every document the same score."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                results = [{"index": i, "relevance_score": 0.5} for i in range(len(body["documents"]))]
                data = json.dumps({"results": results[::-1]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rerank"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _cross_encoder(model_dir: Path, windows: str):
    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(model_dir), windows=windows, window_words=4, window_stride=2, show_progress=False)


def _llm(minilm_path: str):
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from rankwise.rerank.llm import LLMReranker

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)  # "true"/"false" are single tokens; no chat template
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2)).eval()
    return LLMReranker(model, tokenizer, true_token="true", false_token="false", show_progress=False)


@pytest.mark.parametrize("kind", ["cross-encoder", "cross-encoder-windows", "llm", "http"])
def test_reranked_ties_keep_the_first_stage_order_through_a_trec_file(
    kind: str, tiny_cross_encoder_dir: Path, minilm_path: str, tmp_path: Path
) -> None:
    from rankwise.data import read_run, write_run

    server = _Server() if kind == "http" else None
    try:
        if kind == "http":
            from rankwise.rerank.http import HTTPReranker

            reranker = HTTPReranker(server.url, show_progress=False)  # type: ignore[union-attr]
        elif kind == "llm":
            reranker = _llm(minilm_path)
        else:
            reranker = _cross_encoder(tiny_cross_encoder_dir, "first" if kind == "cross-encoder" else "max")
        out = reranker.rerank(QUERIES, FIRST_STAGE, TWINS, k=10)
    finally:
        if server is not None:
            server.close()
    assert out["q"]["136"] == out["q"]["1046"]  # the reranker cannot tell them apart ...
    order = [doc for doc in out["q"] if doc != "7"]
    assert order == ["136", "1046"]  # ... so the first stage's order stands, not the ids' string order
    write_run(out, tmp_path / "rerank.trec")
    assert [doc for doc in read_run(tmp_path / "rerank.trec")["q"] if doc != "7"] == ["136", "1046"]
    ranks = [line.split()[2] for line in (tmp_path / "rerank.trec").read_text().splitlines()]
    assert ranks.index("136") < ranks.index("1046")
