"""Load numbers for ``rankwise serve`` on SciFact, against servers on 127.0.0.1 (issue 21).

    python benchmarks/serve.py [--requests 200] [--seconds 30] [--soak 2000] [--ask-share 0.02] [--out DIR]

Two servers run as ``rankwise serve`` subprocesses on free ports of 127.0.0.1:

- **A** ``--index bm25 --corpus scifact``: BM25 alone (``/v1/search``);
- **B** ``--config`` an experiment config on SciFact: BM25 top-100 → cross-encoder top-20 → SmolLM2 answering from
  the top 3 (``/v1/search``, ``/v1/rerank``, ``/v1/ask``).

The cross-encoder is ``--reranker-model`` when given, else the bundled MiniLM body with an untrained one-logit head
(seeded): the same architecture and therefore the same cost as a trained MiniLM cross-encoder, but its ranking is
meaningless, so only speed is measured with it. Every loop is bounded in requests *and* seconds; traffic goes to
127.0.0.1 only. What it prints (markdown):

1. p50/p95/p99 latency and requests/s at concurrency 1, 8 and 32 for ``/v1/search`` (A), ``/v1/rerank`` (B, 20
   passages a request) and ``/v1/ask`` (B);
2. ``/v1/rerank`` pairs/s at concurrency 16 against the same requests sent one at a time (what micro-batching buys),
   and the largest difference between the served scores and ``rankwise rerank``'s on the same pairs;
3. ``/v1/ask`` at concurrency 1: p50 and p95 of each stage, against the < 2 s a question target;
4. ``--soak`` mixed requests at concurrency 32 against B: errors, lost responses, server RSS after the first 100
   requests and at the end;
5. overload: ``--overload`` (256) simultaneous ``/v1/rerank`` requests against B's queue of 64: how many 200 and
   503 (with Retry-After), anything else, and whether the server still answers afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
name: scifact-serve
datasets: [{data}]
retrieve:
  bm25: {{kind: bm25, k: 100}}
rerank: {{kind: cross-encoder, model: {model}, top_n: 20, max_length: {max_length}}}
generate: {{kind: local, model: smollm2, top_k: 3, max_new_tokens: {max_new_tokens}, batch_size: 4}}
"""


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """SciFact, its BM25 index, the cross-encoder directory, the experiment config; requests' inputs."""
    from rankwise.build import load_index
    from rankwise.data import load_dataset
    from rankwise.retrieve.bm25 import BM25Retriever

    data = Path(args.data or Path(os.environ.get("RANKWISE_DATA", ROOT.parent / "shared" / "datasets")) / "scifact")
    dataset = load_dataset(data, split="test")
    index = work / "bm25"
    if not index.is_dir():
        bm25 = BM25Retriever(show_progress=False)
        bm25.index(dataset.corpus)
        bm25.save(index)
    model = args.reranker_model
    if model is None:
        import torch

        from rankwise.rerank.cross_encoder import load_cross_encoder

        model = str(work / "cross-encoder")
        if not Path(model).is_dir():
            torch.manual_seed(0)
            load_cross_encoder("minilm", num_labels=1).save(model)
    config = work / "scifact-serve.yaml"
    config.write_text(
        CONFIG.format(data=data, model=model, max_length=args.max_length, max_new_tokens=args.max_new_tokens),
        encoding="utf-8",
    )
    queries = list(dataset.judged_queries().values())
    run = load_index(index, show_progress=False).search({q.id: q for q in queries}, k=20)
    rerank_bodies = [
        {"query": q.text, "documents": [dataset.corpus[d].contents for d in run[q.id]], "ids": list(run[q.id])}
        for q in queries
    ]
    return {"data": data, "index": index, "model": model, "config": config, "queries": queries,
            "rerank": rerank_bodies}  # fmt: skip


class Server:
    """``rankwise serve ARGS`` on a free port of 127.0.0.1, as a subprocess."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        command = [sys.executable, "-m", "rankwise", "serve", *args, "--port", str(self.port), "--no-mcp"]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float) -> dict[str, Any]:
        import httpx2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server {self.name} exited with {self.process.returncode}; see {self.log.name}")
            try:
                return httpx2.get(f"{self.url}/healthz", timeout=2).json()
            except httpx2.TransportError:
                time.sleep(0.5)
        raise SystemExit(f"server {self.name} did not start in {timeout:.0f} s; see {self.log.name}")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def cpu_s(self) -> float:
        """CPU seconds the server has used (all its threads): a cost that other load on the machine leaves alone."""
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


async def load(
    url: str, bodies: list[dict[str, Any]], concurrency: int, count: int, seconds: float, give_up: float = 600
) -> dict[str, Any]:
    """``count`` requests (at most; none started after ``seconds``) by ``concurrency`` workers, each abandoned
    after ``give_up`` seconds (the server then drops its queued work); what came back."""
    import httpx2

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    replies: dict[int, dict[str, Any]] = {}  # body position -> reply
    issued = 0
    started = time.perf_counter()
    limits = httpx2.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx2.AsyncClient(timeout=give_up, limits=limits) as client:

        async def worker() -> None:
            nonlocal issued
            while issued < count and time.perf_counter() - started < seconds:
                position = issued % len(bodies)
                body = {k: v for k, v in bodies[position].items() if k != "ids"}
                issued += 1
                began = time.perf_counter()
                try:
                    reply = await client.post(url, json=body)
                except httpx2.HTTPError as exc:
                    key = "gave up" if isinstance(exc, httpx2.TimeoutException) else type(exc).__name__
                    statuses[key] = statuses.get(key, 0) + 1
                    continue
                key = str(reply.status_code)
                statuses[key] = statuses.get(key, 0) + 1
                if reply.status_code == 200:
                    latencies.append(time.perf_counter() - began)
                    replies[position] = reply.json()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    answered = sum(v for k, v in statuses.items() if k.isdigit())
    return {"issued": issued, "answered": answered, "ok": len(latencies), "statuses": statuses, "wall_s": wall,
            "rps": len(latencies) / wall, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99), "replies": replies}  # fmt: skip


def settle(server: Server, timeout: float = 1800) -> None:
    """Wait until the server has nothing queued or computing (abandoned work of a phase must not slow the next)."""
    import httpx2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx2.get(f"{server.url}/healthz", timeout=30).json()
        if not any(health["queues"].values()) and not health["computing"]:
            return
        time.sleep(1)


def not_ok(result: dict[str, Any]) -> str:
    """What did not come back 200, e.g. ``3 gave up, 2×503``."""
    parts = [f"{n} gave up" if k == "gave up" else f"{n}×{k}" for k, n in result["statuses"].items() if k != "200"]
    return ", ".join(parts) or "0"


def levels(args: argparse.Namespace, a: Server, b: Server, inputs: dict[str, Any]) -> list[list[str]]:
    search = [{"query": q.text} for q in inputs["queries"]]
    ask = [{"question": q.text} for q in inputs["queries"]]
    rows = []
    for name, server, bodies, count, give_up in (
        ("/v1/search (BM25)", a, search, args.requests, 600),
        ("/v1/rerank (20 passages)", b, inputs["rerank"], args.requests, 600),
        ("/v1/ask (BM25 → CE top-20 → SmolLM2 top-3)", b, ask, args.ask_requests, args.ask_give_up),
    ):
        url = f"{server.url}/v1/{name.split()[0].rsplit('/', 1)[-1]}"
        for concurrency in (1, 8, 32):
            settle(server)
            cpu = server.cpu_s()
            result = asyncio.run(load(url, bodies, concurrency, max(count, concurrency), args.seconds, give_up))
            settle(server)  # abandoned work still burns CPU: count it against the requests answered
            per_request = (server.cpu_s() - cpu) / max(result["ok"], 1)
            rows.append([name, str(concurrency), f"{result['ok']}/{result['issued']}", f"{1000 * result['p50']:.0f}",
                         f"{1000 * result['p95']:.0f}", f"{1000 * result['p99']:.0f}", f"{result['rps']:.2f}",
                         f"{per_request:.2f}", not_ok(result)])  # fmt: skip
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


def batching(args: argparse.Namespace, b: Server, inputs: dict[str, Any], work: Path) -> dict[str, Any]:
    """Pairs/s of /v1/rerank one at a time vs 16 at a time; served scores vs ``rankwise rerank``'s."""
    bodies = inputs["rerank"][: args.batch_requests]
    cpu = b.cpu_s()
    alone = asyncio.run(load(f"{b.url}/v1/rerank", bodies, 1, len(bodies), args.seconds * 4))
    cpu_alone, cpu = b.cpu_s() - cpu, b.cpu_s()
    together = asyncio.run(load(f"{b.url}/v1/rerank", bodies, 16, len(bodies), args.seconds * 4))
    cpu_together = b.cpu_s() - cpu
    pairs = sum(len(body["documents"]) for body in bodies)
    from rankwise.data import read_run, write_run

    run = {q.id: dict.fromkeys(body["ids"], 0.0) for q, body in zip(inputs["queries"], bodies, strict=False)}
    for qid, body in zip(run, bodies, strict=False):  # the BM25 order, as the server got them
        run[qid] = {doc_id: float(-rank) for rank, doc_id in enumerate(body["ids"])}
    write_run(run, work / "bm25-top20.trec")
    command = [sys.executable, "-m", "rankwise", "rerank", "--run", str(work / "bm25-top20.trec"),
               "--corpus", str(inputs["data"]), "--model", inputs["model"], "--top-n", "20",
               "--max-length", str(args.max_length), "--out", str(work / "cli-rerank.trec")]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True)
    cli = read_run(work / "cli-rerank.trec")
    worst = 0.0
    for position, (qid, body) in enumerate(zip(run, bodies, strict=False)):
        for served in (alone, together):  # scored alone and batched with others: both must match
            for item in served["replies"][position]["results"]:
                worst = max(worst, abs(item["relevance_score"] - cli[qid][body["ids"][item["index"]]]))
    return {"alone_pairs_s": pairs / alone["wall_s"], "together_pairs_s": pairs / together["wall_s"],
            "alone_pairs_per_cpu_s": pairs / cpu_alone, "together_pairs_per_cpu_s": pairs / cpu_together,
            "ratio": alone["wall_s"] / together["wall_s"], "max_score_diff": worst, "requests": len(bodies),
            "errors": (len(bodies) - alone["ok"]) + (len(bodies) - together["ok"])}  # fmt: skip


def ask_stages(args: argparse.Namespace, b: Server, inputs: dict[str, Any]) -> dict[str, dict[str, float]]:
    bodies = [{"question": q.text} for q in inputs["queries"][: args.ask_requests]]
    result = asyncio.run(load(f"{b.url}/v1/ask", bodies, 1, len(bodies), args.seconds * 10))
    stages: dict[str, list[float]] = {}
    for reply in result["replies"].values():
        for stage, ms in reply["latency_ms"].items():
            stages.setdefault(stage, []).append(ms)
    return {s: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)} for s, v in stages.items()}


def soak(args: argparse.Namespace, b: Server, inputs: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(0)
    search = [(f"{b.url}/v1/search", {"query": q.text}) for q in inputs["queries"]]
    ask = [(f"{b.url}/v1/ask", {"question": q.text}) for q in inputs["queries"]]
    rerank = [(f"{b.url}/v1/rerank", {k: v for k, v in body.items() if k != "ids"}) for body in inputs["rerank"]]
    mix = []
    for i in range(args.soak):
        pool = ask if rng.random() < args.ask_share else (search if i % 2 else rerank)
        mix.append(pool[i % len(pool)])

    async def run() -> dict[str, Any]:
        import httpx2

        statuses: dict[str, int] = {}
        rss: dict[str, float] = {}
        done = 0
        next_index = 0
        started = time.perf_counter()
        limits = httpx2.Limits(max_connections=40, max_keepalive_connections=40)
        async with httpx2.AsyncClient(timeout=600, limits=limits) as client:

            async def worker() -> None:
                nonlocal done, next_index
                while next_index < len(mix) and time.perf_counter() - started < args.soak_seconds:
                    url, body = mix[next_index]
                    next_index += 1
                    try:
                        key = str((await client.post(url, json=body)).status_code)
                    except httpx2.HTTPError as exc:
                        key = type(exc).__name__
                    statuses[key] = statuses.get(key, 0) + 1
                    done += 1
                    if done == 100:
                        rss["after_100"] = b.rss_mb()

            await asyncio.gather(*(worker() for _ in range(32)))
        rss["end"] = b.rss_mb()
        return {"issued": next_index, "statuses": statuses, "rss_mb": rss, "wall_s": time.perf_counter() - started}

    return asyncio.run(run())


def overload(args: argparse.Namespace, b: Server, inputs: dict[str, Any]) -> dict[str, Any]:
    import httpx2

    bodies = [{k: v for k, v in body.items() if k != "ids"} for body in inputs["rerank"]]

    async def run() -> dict[str, Any]:
        limits = httpx2.Limits(max_connections=args.overload + 8, max_keepalive_connections=args.overload + 8)
        async with httpx2.AsyncClient(timeout=600, limits=limits) as client:
            replies = await asyncio.gather(
                *(client.post(f"{b.url}/v1/rerank", json=bodies[i % len(bodies)]) for i in range(args.overload)),
                return_exceptions=True,
            )
        statuses: dict[str, int] = {}
        retry_after = set()
        for reply in replies:
            key = type(reply).__name__ if isinstance(reply, BaseException) else str(reply.status_code)
            statuses[key] = statuses.get(key, 0) + 1
            if not isinstance(reply, BaseException) and reply.status_code == 503:
                retry_after.add(reply.headers.get("retry-after"))
        return {"statuses": statuses, "retry_after": sorted(r or "missing" for r in retry_after)}

    started = time.perf_counter()
    result = asyncio.run(run())
    result["wall_s"] = time.perf_counter() - started
    result["alive_after"] = b.process.poll() is None and httpx2.get(f"{b.url}/healthz", timeout=10).status_code == 200
    return result


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="SciFact directory (default: $RANKWISE_DATA/scifact)")
    parser.add_argument("--reranker-model", help="a trained cross-encoder (default: MiniLM, untrained head)")
    parser.add_argument(
        "--max-length", type=int, default=128, help="cross-encoder tokens per pair (scifact-hybrid trains at 128)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48, help="answer budget of SmolLM2")
    parser.add_argument("--requests", type=int, default=200, help="requests per load level (search, rerank)")
    parser.add_argument("--ask-requests", type=int, default=16, help="requests per load level (ask)")
    parser.add_argument("--ask-give-up", type=float, default=600, help="a client abandons an ask after this")
    parser.add_argument("--seconds", type=float, default=30, help="no new request after this, per load level")
    parser.add_argument("--batch-requests", type=int, default=32, help="rerank requests of the batching check")
    parser.add_argument("--soak", type=int, default=2000, help="mixed requests at concurrency 32")
    parser.add_argument("--soak-seconds", type=float, default=1800, help="time bound of the soak")
    parser.add_argument("--ask-share", type=float, default=0.02, help="share of /v1/ask in the soak")
    parser.add_argument("--overload", type=int, default=256, help="simultaneous requests against a queue of 64")
    parser.add_argument("--out", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["levels", "batching", "ask", "soak", "overload"])
    args = parser.parse_args()

    work = args.out or Path(tempfile.mkdtemp(prefix="rankwise-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = prepare(args, work)
    a = Server("A", ["--index", str(inputs["index"]), "--corpus", str(inputs["data"])], work / "server-a.log")
    b = Server("B", ["--config", str(inputs["config"]), "--out", str(work / "outputs"), "--max-queue", "64"],
               work / "server-b.log")  # fmt: skip
    results: dict[str, Any] = {"work": str(work), "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    try:
        a.wait(120)
        results["pipeline_b"] = b.wait(900)
        out: list[str] = []
        if "levels" not in args.skip:
            rows = levels(args, a, b, inputs)
            header = ["endpoint", "concurrency", "ok/sent", "p50 ms", "p95 ms", "p99 ms", "req/s", "server CPU s/ok",
                      "not ok"]  # fmt: skip
            out.append(table(header, rows))
            results["levels"] = rows
        if "batching" not in args.skip:
            print("batching check…", file=sys.stderr, flush=True)
            settle(b)
            gain = batching(args, b, inputs, work)
            results["batching"] = gain
            out.append(
                f"/v1/rerank, {gain['requests']} requests of 20 pairs: {gain['alone_pairs_s']:.1f} pairs/s one at a "
                f"time, {gain['together_pairs_s']:.1f} pairs/s at concurrency 16 ({gain['ratio']:.2f}x); per server "
                f"CPU second {gain['alone_pairs_per_cpu_s']:.1f} vs {gain['together_pairs_per_cpu_s']:.1f} pairs; "
                f"largest score difference to `rankwise rerank`: {gain['max_score_diff']:.2e}; errors {gain['errors']}"
            )
        if "ask" not in args.skip:
            print("ask stages…", file=sys.stderr, flush=True)
            settle(b)
            stages = ask_stages(args, b, inputs)
            results["ask_stages"] = stages
            rows = [[s, f"{v['p50']:.0f}", f"{v['p95']:.0f}", str(v["n"])] for s, v in stages.items()]
            out.append(table(["/v1/ask stage (concurrency 1)", "p50 ms", "p95 ms", "questions"], rows))
        if "soak" not in args.skip:
            print("soak…", file=sys.stderr, flush=True)
            settle(b)
            soaked = soak(args, b, inputs)
            results["soak"] = soaked
            out.append(f"soak: {json.dumps(soaked)}")
        if "overload" not in args.skip:
            print("overload…", file=sys.stderr, flush=True)
            settle(b)
            over = overload(args, b, inputs)
            results["overload"] = over
            out.append(f"overload ({args.overload} at once, queue 64): {json.dumps(over)}")
    finally:
        a.stop()
        b.stop()
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print("\n\n".join(out))
    print(f"\n(load average at the start {results['load_average']}; details in {work / 'results.json'})")


if __name__ == "__main__":
    main()
