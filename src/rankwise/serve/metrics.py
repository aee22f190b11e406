"""Counters and latency histograms in the Prometheus text format (``GET /metrics``, version 0.0.4).

Kept in memory by the one server process; cumulative since it started. Families:

- ``rankwise_requests_total{endpoint, status}``: requests answered;
- ``rankwise_request_seconds{endpoint}``: time to answer (to the last byte for a stream);
- ``rankwise_stage_seconds{stage}``: time a request spent in each stage (retrieve, rerank, generate), queueing
  for its batch included;
- ``rankwise_batch_items{batcher}``: items per model call (how much micro-batching happened);
- ``rankwise_queue_depth{batcher}`` and ``rankwise_rejected_total{batcher}``: waiting items, and items refused
  with a 503 because the queue was full;
- ``rankwise_inflight_requests``: requests being answered now.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
ITEMS = (1, 2, 4, 8, 16, 32, 64, 128)
INF = 'le="+Inf"'

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{key}="{_escape(value)}"' for key, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str, labels: Labels) -> Iterable[str]:
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            le = f'le="{bound:g}"'
            yield f"{name}_bucket{_labels(labels, le)} {running}"
        running += self.counts[-1]
        yield f"{name}_bucket{_labels(labels, INF)} {running}"
        yield f"{name}_sum{_labels(labels)} {self.total:.6f}"
        yield f"{name}_count{_labels(labels)} {running}"


class Metrics:
    """The server's metrics; thread-safe (batch workers report from their threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[Labels, int] = {}
        self.request_seconds: dict[Labels, _Histogram] = {}
        self.stage_seconds: dict[Labels, _Histogram] = {}
        self.batch_items: dict[Labels, _Histogram] = {}
        self.inflight = 0

    def request_started(self) -> None:
        with self._lock:
            self.inflight += 1

    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.inflight -= 1
            key = (("endpoint", endpoint), ("status", str(status)))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.request_seconds.setdefault((("endpoint", endpoint),), _Histogram(SECONDS)).observe(seconds)

    def stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_seconds.setdefault((("stage", stage),), _Histogram(SECONDS)).observe(seconds)

    def batch(self, batcher: str, items: int, seconds: float) -> None:
        with self._lock:
            self.batch_items.setdefault((("batcher", batcher),), _Histogram(ITEMS)).observe(items)

    def render(self, queue_depth: dict[str, int], rejected: dict[str, int]) -> str:
        """The exposition text; ``queue_depth`` and ``rejected`` are read from the batchers by the caller."""
        out: list[str] = []
        with self._lock:
            out += ["# HELP rankwise_requests_total Requests answered.", "# TYPE rankwise_requests_total counter"]
            out += [f"rankwise_requests_total{_labels(k)} {v}" for k, v in sorted(self.requests.items())]
            for name, table, help_text in (
                ("rankwise_request_seconds", self.request_seconds, "Time to answer a request."),
                ("rankwise_stage_seconds", self.stage_seconds, "Time a request spent in a stage, queueing included."),
                ("rankwise_batch_items", self.batch_items, "Items per model call."),
            ):
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
                for key, histogram in sorted(table.items()):
                    out += histogram.lines(name, key)
            out += [
                "# HELP rankwise_inflight_requests Requests being answered now.",
                "# TYPE rankwise_inflight_requests gauge",
            ]
            out.append(f"rankwise_inflight_requests {self.inflight}")
        out += ["# HELP rankwise_queue_depth Items waiting for a batch.", "# TYPE rankwise_queue_depth gauge"]
        out += [f'rankwise_queue_depth{{batcher="{n}"}} {v}' for n, v in sorted(queue_depth.items())]
        out += [
            "# HELP rankwise_rejected_total Items refused (503) because the queue was full.",
            "# TYPE rankwise_rejected_total counter",
        ]
        out += [f'rankwise_rejected_total{{batcher="{n}"}} {v}' for n, v in sorted(rejected.items())]
        return "\n".join(out) + "\n"
