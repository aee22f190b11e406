"""The lazy front door, the package layout rules of the architecture issue, and the one override flag."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rankwise

SRC = Path(rankwise.__file__).resolve().parent


def test_front_door_names_load_lazily_and_work():
    probe = (
        "import sys, rankwise; assert 'torch' not in sys.modules and 'rankwise.retrieve' not in sys.modules;"
        "from rankwise import load_dataset, BM25Retriever, DenseRetriever, CrossEncoderReranker, evaluate, Pipeline;"
        "import rankwise.evaluate.stats;"
        "from rankwise import evaluate as e2;"
        "run = {'q': {'a': 2.0, 'b': 1.0}}; qrels = {'q': {'b': 1}};"
        "assert evaluate(run, qrels, ['RR@10']) == e2(run, qrels, ['RR@10']) == {'RR@10': 0.5};"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_only_the_allowed_modules_sit_at_the_package_root_and_train_holds_no_rankrag():
    allowed = {"__init__.py", "__main__.py", "build.py", "types.py", "errors.py"}
    assert {p.name for p in SRC.glob("*.py")} <= allowed
    assert not list((SRC / "train").glob("rankrag*"))


def test_no_import_cycles_between_files_or_folders():
    """Arrows point one way (the same check as shared/hooks/import_cycles.py, on the AST)."""
    graph: dict[str, set[str]] = {}
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for g in ast.walk(tree)
            if isinstance(g, ast.If) and "TYPE_CHECKING" in ast.dump(g.test)
            for n in ast.walk(g)
        }
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rankwise"):
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("rankwise")}
        graph[name] = {r for t in targets if (r := resolve(t)) and r != name and not name.startswith(r + ".")}

    def folder(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or ((SRC / parts[-1]).is_dir() and len(parts) == 2) else "root"

    def has_cycle(edges: dict[str, set[str]]) -> list[str]:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> list[str]:
            state[node] = 1
            stack.append(node)
            for nxt in edges.get(node, ()):
                if state.get(nxt) == 1:
                    return [*stack[stack.index(nxt) :], nxt]
                if nxt not in state and (found := visit(nxt)):
                    return found
            state[node] = 2
            stack.pop()
            return []

        for node in list(edges):
            if node not in state and (found := visit(node)):
                return found
        return []

    assert has_cycle(graph) == []
    folders: dict[str, set[str]] = {}
    for name, targets in graph.items():
        for target in targets:
            a, b = folder(name), folder(target)
            if a != b and "root" not in (a, b):
                folders.setdefault(a, set()).add(b)
    assert has_cycle(folders) == []


def test_the_cli_answers_help_and_a_mistyped_option_without_loading_a_heavy_library():
    """Why cli/ imports inside commands (docs/architecture.md): --help and usage errors stay instant."""
    probe = (
        "import sys; from rankwise.cli import main;"
        "codes = [main(['--help']), main(['index', '--no-such-option']), main(['serve', '--help'])];"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'faiss', 'bm25s', 'fastapi', 'ray')"
        " if m in sys.modules];"
        "print(codes, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[0, 2, 0] []", (out.stdout, out.stderr)
