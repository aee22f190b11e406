"""`rankwise data stats`: counts as a table or JSON, warnings on stderr, errors as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rankwise.cli import data as data_cli
from rankwise.errors import DataError


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    data_cli.register(app)
    return app


def test_stats_json_on_scifact(app: typer.Typer, scifact_dir: Path) -> None:
    result = CliRunner().invoke(app, ["data", "stats", str(scifact_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "documents": 5183,
        "queries": 1109,
        "judged_queries": 300,
        "qrels": 339,
    }
    result = CliRunner().invoke(app, ["data", "stats", str(scifact_dir), "--split", "train", "--json"])
    assert json.loads(result.stdout)["qrels"] == 919


def test_stats_json_on_cranfield_sends_warnings_to_stderr(app: typer.Typer, cranfield_dir: Path) -> None:
    result = CliRunner().invoke(app, ["data", "stats", str(cranfield_dir), "--format", "smart", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "documents": 1400,
        "queries": 225,
        "judged_queries": 225,
        "qrels": 1612,
    }
    assert "warning:" in result.stderr and "225 rows have grade -1" in result.stderr


def test_stats_table(app: typer.Typer, hotpotqa_file: Path) -> None:
    result = CliRunner().invoke(app, ["data", "stats", str(hotpotqa_file)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line.split()[3] for line in result.stdout.splitlines() if line.count("│") == 3}
    assert lines == {"documents": "994", "queries": "100", "judged_queries": "100", "qrels": "200"}


def test_bad_dataset_raises_data_error(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "stats", str(tmp_path)])
    assert isinstance(result.exception, DataError)


def test_main_prints_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rankwise.cli.retrieval", reason="the full CLI app is not assembled yet")
    from rankwise.cli import main

    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("rankwise: error: ")
