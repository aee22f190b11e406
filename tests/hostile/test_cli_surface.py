"""The CLI's surface (issue 20): usage errors, --version, Ctrl-C, OS errors and model-loading errors each end in
a short message and the right exit status, never a traceback; every extra an error message names exists."""

from __future__ import annotations

import ast
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import rankwise
from rankwise.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """A two-document BEIR directory with one judged query."""
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": "d1", "title": "wings", "text": "lift on a wing"}, {"_id": "d2", "title": "heat", "text": "flux"}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "wing lift"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def error_lines(err: str) -> list[str]:
    """stderr lines, progress-bar redraws (carriage returns) dropped."""
    shown = (line.rsplit("\r", 1)[-1] for line in err.split("\n"))
    return [line for line in shown if line.strip()]


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (["search", "--bogus"], "Usage: rankwise search [OPTIONS]", "Error: No such option: --bogus"),
        (["search"], "Usage: rankwise search [OPTIONS]", "Error: Missing option '--index'."),
        (["eval"], "Usage: rankwise eval [OPTIONS]", "Error: Missing option '--run'."),
        (["train", "reranker"], "Usage: rankwise train reranker [OPTIONS]", "Error: Missing option '--config'."),
    ],
)
def test_usage_errors_are_click_usage_messages_with_status_2(
    argv: list[str], usage: str, message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "index_dirs" not in err  # the flag, never the parameter's Python name
    assert err.startswith(usage)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"rankwise {rankwise.__version__}\n"


def _default_sigint() -> None:
    """In the child: SIGINT's default disposition. A test run started in the background of a shell without job
    control (``nohup bash .ci/run &``) ignores SIGINT, every child inherits that, and Python keeps an ignored
    SIGINT ignored: rankwise would never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # nor inherit a mask a library left blocking it


def _waits(pid: int) -> list[str]:
    """Where each thread of ``pid`` sleeps in the kernel (for the failure message)."""
    tasks = Path(f"/proc/{pid}/task")
    return [(task / "wchan").read_text() for task in tasks.iterdir()] if tasks.is_dir() else []


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["run", "--experiment"], "interrupted `rankwise run`; re-run the same command to resume"),
        (
            ["eval", "--qrels", "x", "--run"],
            "interrupted `rankwise eval`; re-running it starts over (these resume: run,",
        ),
    ],
)
def test_ctrl_c_exits_130_and_says_what_stopped(argv: list[str], said: str, tmp_path: Path) -> None:
    """SIGINT to ``python -m rankwise`` blocked reading a FIFO: status 130 (so ``&&`` stops) and one line."""
    fifo = tmp_path / "blocked"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rankwise", *argv, str(fifo)], env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # opening the write end succeeds once rankwise has the FIFO open for reading
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "rankwise never opened the FIFO"
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
        # Ctrl-C, and again if it is still running 10 s later: in about one full-suite run in three (nohup'd, on
        # the 2-core machine; never in 20 runs of this test alone) the first SIGINT went unanswered. The second
        # is what a user does; the test still requires exit status 130 and the one line.
        err = None
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        assert err is not None, f"rankwise ignored three SIGINTs; its threads wait in {_waits(proc.pid)}"
    finally:
        proc.kill()
        if writer is not None:
            os.close(writer)
    assert proc.returncode == 130
    assert error_lines(err) == [error_lines(err)[0]] and said in err, err


def test_out_under_a_file_is_one_line_naming_it(tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--out somefile.txt/sub``: a file stands where a folder must be (index: a folder; search: a file)."""
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("keep me\n")
    assert main(["index", str(tiny_beir), "--out", str(blocker / "sub")]) == 1
    assert error_lines(capsys.readouterr().err) == [f"rankwise: error: {blocker}: Not a directory"]
    assert main(["index", str(tiny_beir), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    search = ["search", "--index", str(tmp_path / "idx"), "--queries", str(tiny_beir)]
    assert main([*search, "--out", str(blocker / "sub" / "run.trec")]) == 1
    assert error_lines(capsys.readouterr().err) == [f"rankwise: error: {blocker / 'sub'}: Not a directory"]
    assert blocker.read_text() == "keep me\n"


def test_index_out_being_a_file_is_refused_not_replaced(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    assert main(["index", str(tiny_beir), "--out", str(target)]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"rankwise: error: {target}: ") and "not a folder" in err[0]
    assert target.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "tiny"]  # no temp or .old- leftovers


def test_search_out_being_a_directory_is_one_line(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["index", str(tiny_beir), "--out", str(tmp_path / "idx")]) == 0
    folder = tmp_path / "runs"
    folder.mkdir()
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "idx"), "--queries", str(tiny_beir), "--out", str(folder)]) == 1
    assert error_lines(capsys.readouterr().err) == [f"rankwise: error: {folder}: Is a directory"]
    assert list(folder.iterdir()) == []


def test_full_disk_while_writing_is_one_line_naming_the_out_file(tiny_beir: Path, tmp_path: Path) -> None:
    """A write that fails without naming its file (ENOSPC, EFBIG...): here a 16-byte file-size limit (RLIMIT_FSIZE,
    SIGXFSZ ignored) stands in for a full disk, in a child process."""
    assert main(["index", str(tiny_beir), "--out", str(tmp_path / "idx")]) == 0
    out = tmp_path / "run.trec"

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    search = ["search", "--index", str(tmp_path / "idx"), "--queries", str(tiny_beir), "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-B", "-m", "rankwise", *search],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert proc.returncode == 1
    assert error_lines(proc.stderr)[-1:] == [f"rankwise: error: {out}: File too large"], proc.stderr
    assert "Traceback" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["idx", "tiny"]


@pytest.mark.parametrize("out", ["/sys/rankwise-idx", "/proc/rankwise-idx"])
def test_unwritable_file_system_is_one_line_naming_the_out_path(
    out: str, tiny_beir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["index", str(tiny_beir), "--out", out]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"rankwise: error: {out}: "), err


def test_missing_local_model_names_the_model(tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no-such-model"
    assert (
        main(["index", str(tiny_beir), "--kind", "dense", "--model", str(missing), "--out", str(tmp_path / "x")]) == 2
    )
    err = error_lines(capsys.readouterr().err)
    assert err == [f"rankwise: error: cannot load model '{missing}': no such file or directory"]


def test_unreachable_hub_model_names_the_model(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1, read at import
    name = "no-such-org/no-such-model"
    assert main(["index", str(tiny_beir), "--kind", "dense", "--model", name, "--out", str(tmp_path / "x")]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"rankwise: error: cannot load model '{name}': "), err
    assert "needs the network or a cached copy" in err[0]


def named_extras() -> dict[str, set[str]]:
    """Every extra ``src`` tells users to install -> the packages named with it (MissingExtraError calls and
    literal ``rankwise[NAME]`` text)."""
    named: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src" / "rankwise").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for extra in re.findall(r"rankwise\[([A-Za-z0-9_.-]+)\]", text):
            named.setdefault(extra, set())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MissingExtraError":
                package, extra = node.args
                assert isinstance(extra, ast.Constant), f"{path}:{node.lineno}: the extra must be a literal"
                names = named.setdefault(extra.value, set())
                if isinstance(package, ast.Constant) and re.fullmatch(r"[A-Za-z0-9_.-]+", package.value):
                    names.add(package.value)
    return named


def test_every_extra_an_error_names_is_defined_with_its_package() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = named_extras()
    assert {"tracking", "qlora"} <= set(named)
    for extra, packages in named.items():
        assert extra in extras, f"messages name rankwise[{extra}], pyproject.toml defines no such extra"
        listed = {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in extras[extra]}
        assert {p.lower() for p in packages} <= listed, (extra, packages, listed)
