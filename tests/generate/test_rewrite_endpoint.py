"""Query rewriting through a served LLM (issue 24, item 5): ``rewrite: {kind: llm, endpoint: ..., model: ...}`` in
an experiment, its own server and model, separate from the generator's; ``rankwise rag --rewriter-endpoint``.
The server is the scripted OpenAI-compatible one of conftest.py, on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from rankwise.config.experiment import ConfigError, load_config
from rankwise.errors import RankwiseError
from rankwise.experiment import run_experiment


def quiet(*_: object) -> None:
    return None


def _config(tmp_path, body: str):
    path = tmp_path / "exp.yaml"
    path.write_text(body, encoding="utf-8")
    return load_config(path)


def test_an_experiment_rewrites_with_the_model_its_endpoint_serves(tmp_path, data_root, fake_openai, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    monkeypatch.setenv("RW_KEY", "s3cret")
    fake_openai.default_content = "Which benefits does the state offer veterans?"
    body = (
        "name: rw\n"
        f"rewrite: {{kind: llm, endpoint: '{fake_openai.url}', model: rewriter-7b, api_key_env: RW_KEY}}\n"
        "retrieve: {bm25: {k: 20}}\n"
        "data: {max_queries: 6}\n"
    )
    config = _config(tmp_path, body)
    assert config.rewrite.strategy == "llm"  # `kind` is the same key as `strategy`
    [out] = run_experiment(config, ["mtrag:govt"], tmp_path / "out", show_progress=False, log=quiet)
    searched = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    rewritten = [q for q in searched if q["text"] == fake_openai.default_content]
    assert rewritten and len(fake_openai.requests) == len(rewritten)  # one call per question with history
    request = fake_openai.requests[0]
    assert request["body"]["model"] == "rewriter-7b" and request["headers"]["Authorization"] == "Bearer s3cret"
    assert [m["role"] for m in request["body"]["messages"]] == ["system", "user"]  # the rewrite prompt
    # the key in config.yaml and the cache key name the variable at most, never the secret
    assert "s3cret" not in (out / "config.yaml").read_text()

    # a rerun reuses the rewrites (same endpoint, model and settings): no more calls
    calls = len(fake_openai.requests)
    run_experiment(config, ["mtrag:govt"], tmp_path / "out", show_progress=False, log=quiet)
    assert len(fake_openai.requests) == calls


def test_rewrite_endpoint_settings_are_checked_where_they_are_written(tmp_path, monkeypatch):
    cases = {
        "rewrite: {strategy: last_turn, endpoint: 'http://127.0.0.1:9/v1'}": "apply to the llm strategy only",
        "rewrite: {kind: llm, endpoint: 'ftp://x', model: m}": "must be an http",
        "rewrite: {kind: llm, model: m, api_key_env: K}": "api_key_env goes with an endpoint",
    }
    for line, message in cases.items():
        with pytest.raises(ConfigError, match=message) as caught:
            _config(tmp_path, f"name: x\n{line}\nretrieve: {{bm25: {{k: 5}}}}\n")
        assert "exp.yaml" in str(caught.value) and "line 2" in str(caught.value)

    from rankwise.build import build_rewriter
    from rankwise.config.sections import RewriteConfig

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    unset = RewriteConfig(strategy="llm", model="m", endpoint="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(RankwiseError, match=r"rewrite\.api_key_env: environment variable NO_SUCH_KEY_VAR is not set"):
        build_rewriter(unset)


def test_rag_takes_a_rewriter_endpoint_and_refuses_a_url_as_model(tmp_path, capsys):
    from rankwise.cli import main

    args = ["rag", "--dataset", "mtrag", str(tmp_path), "--out", str(tmp_path / "o"), "--rewrite", "llm"]
    assert main([*args, "--rewriter-model", "http://127.0.0.1:9/v1"]) == 2
    assert "give the server as --rewriter-endpoint" in capsys.readouterr().err
    assert main([*args, "--rewriter-endpoint", "http://127.0.0.1:9/v1"]) == 2
    assert "--rewriter-endpoint needs --rewriter-model" in capsys.readouterr().err
    assert main(["rag", "--dataset", "mtrag", str(tmp_path), "--out", "o", "--rewriter-endpoint", "http://h/v1"]) == 2
    assert "apply to --rewrite llm only" in capsys.readouterr().err
