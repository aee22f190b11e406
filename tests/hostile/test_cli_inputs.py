"""Issue 20: input a command silently bent — an empty question, more passages than candidates, a non-positive
--limit-queries. Each is now refused up front with one line naming the flag, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.cli import main


@pytest.fixture()
def bm25_index(tmp_path: Path, cranfield_dir: Path) -> Path:
    out = tmp_path / "idx"
    assert main(["index", str(cranfield_dir), "--kind", "bm25", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["   "], "QUESTION is empty"),
        (["what is lift?", "--k", "50", "--candidates", "5"], "--k 50 passages cannot come from --candidates 5"),
        (["what is lift?", "--k", "0"], "--k"),  # refused by the option itself (min 1) or by ask
    ],
)
def test_ask_refuses_what_it_used_to_bend(bm25_index, cranfield_dir, capsys, extra, message):
    status = main(
        ["ask", *extra, "--index", str(bm25_index), "--corpus", str(cranfield_dir), "--generator", "/no/model"]
    )
    assert status == 2
    assert message in capsys.readouterr().err  # refused before the (missing) generator model is even looked at


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_rerank_limit_queries_must_be_positive(tmp_path, cranfield_dir, capsys, limit):
    run = tmp_path / "r.trec"
    run.write_text("1 Q0 1 1 1.0 x\n2 Q0 2 1 1.0 x\n", encoding="utf-8")
    out = tmp_path / "out.trec"
    status = main(
        ["rerank", "--run", str(run), "--corpus", str(cranfield_dir), "--model", "/no/model",
         "--limit-queries", limit, "--out", str(out)]
    )  # fmt: skip
    assert status == 2
    assert "--limit-queries must be at least 1" in capsys.readouterr().err
    assert not out.exists()
