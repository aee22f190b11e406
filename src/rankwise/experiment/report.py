"""One self-contained HTML report over experiment outputs: tables, plots (inline base64 PNG) and example rankings.

Sections, per data set: a metric table for every ranking stage of every output (with latency), the paired
significance table against the first system, metric bars per system, recall@k curves and the nDCG@k sweep,
latency per stage, and before/after rankings for the queries whose nDCG@10 moved most between the first
ranking stage and the final one (gold documents marked). Plots use matplotlib's object API (no pyplot state).
The page has no external resources; a small inline script records how many images decoded
(``<body data-images-ok=N data-images-total=M>``), which the Chromium test reads.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rankwise.data.files import atomic_write_text
from rankwise.errors import MissingExtraError, RankwiseError
from rankwise.experiment.compare import HEADERS, cells, compare_systems
from rankwise.experiment.outputs import Output, System, load_outputs

TEMPLATE = Path(__file__).with_name("report_template.html")
Figure = Any


def _figure(width: float = 7.0, height: float = 3.6) -> Figure:
    try:
        from matplotlib.figure import Figure as MplFigure
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "report") from exc
    return MplFigure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def ranking_stages(output: Output) -> list[str]:
    return [s for s in output.stages if output.stage(s).get("type") != "generate"]


def systems_of(outputs: Sequence[Output]) -> list[System]:
    """Every ranking stage of every output, in order (the first is the comparison baseline)."""
    return [System(f"{o.label}:{stage}", o, stage) for o in outputs for stage in ranking_stages(o)]


def qa_table(outputs: Sequence[Output]) -> str:
    """Answer quality of every output that generated answers (means over the questions where defined)."""
    answered = [o for o in outputs if "generate" in o.stages]
    if not answered:
        return ""
    names = list(dict.fromkeys(m for o in answered for m in o.stage("generate")["metrics"]))
    rows = []
    for output in answered:
        entry = output.stage("generate")
        values, defined = entry["metrics"], entry.get("defined", {})
        cells = [html.escape(output.label), html.escape(str(entry.get("from", ""))), str(entry.get("questions", ""))]
        for name in names:
            value = values.get(name)
            count = f" <span class='note'>({defined[name]})</span>" if name in defined else ""
            cells.append("" if value is None else f"{value:.3f}{count}")
        rows.append(cells)
    note = "<p class='note'>(n): questions where the score is defined (e.g. EM needs a gold answer).</p>"
    return "<h3>Answers</h3>" + _table(["output", "from ranking", "questions", *names], rows, "qa") + note


def _short(label: str, systems: Sequence[System]) -> str:
    experiments = {s.output.metrics.get("experiment") for s in systems}
    if len(experiments) == 1:
        return label.split(":", 1)[-1] if ":" in label else label
    experiment, _, rest = label.partition("/")
    return f"{experiment}:{rest.split(':', 1)[-1]}"


# ---------------------------------------------------------------------------------------------------- plots


def metric_bars(systems: Sequence[System], metrics: Sequence[str]) -> str:
    figure = _figure(max(6.0, 1.2 * len(metrics) * max(1, len(systems)) / 2 + 3), 3.8)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        means = system.means()
        xs = [m + (i - (len(systems) - 1) / 2) * width for m in range(len(metrics))]
        bars = axes.bar(xs, [means.get(name, 0.0) for name in metrics], width, label=_short(system.label, systems))
        axes.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    axes.set_xticks(range(len(metrics)), list(metrics))
    axes.set_ylabel("mean over queries")
    axes.set_ylim(0, 1.05)
    axes.set_title("Metrics per system")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure, "metric bars per system")


def sweep_plot(systems: Sequence[System], family: str, title: str) -> str:
    figure = _figure()
    axes = figure.add_subplot()
    for system in systems:
        curve = system.output.stage(system.stage).get("sweep", {}).get(family, {})
        if curve:
            ks = sorted(curve, key=int)
            axes.plot([int(k) for k in ks], [curve[k] for k in ks], marker="o", label=_short(system.label, systems))
    axes.set_xscale("log")
    axes.set_xlabel("cutoff k")
    axes.set_ylabel(f"{family}@k")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.set_title(title)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure, title)


def latency_plot(outputs: Sequence[Output]) -> str:
    figure = _figure(7.0, 1.3 + 0.45 * len(outputs))
    axes = figure.add_subplot()
    labels = [o.label for o in outputs]
    for index, output in enumerate(outputs):
        left = 0.0
        for stage in [*ranking_stages(output), *(["generate"] if "generate" in output.stages else [])]:
            seconds = float(output.stage(stage).get("timing", {}).get("total_s") or 0.0)
            axes.barh(index, seconds, left=left, label=stage if index == 0 else None)
            if seconds:
                axes.text(left + seconds / 2, index, stage, ha="center", va="center", fontsize=7)
            left += seconds
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("seconds (when the stage was computed)")
    axes.set_title("Latency per stage")
    return _png(figure, "latency per stage")


# --------------------------------------------------------------------------------------------------- tables


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def metric_table(systems: Sequence[System], metrics: Sequence[str]) -> str:
    rows = []
    for system in systems:
        entry = system.output.stage(system.stage)
        means = system.means()
        best = {m: max(s.means().get(m, float("-inf")) for s in systems) for m in metrics}
        cells = [html.escape(system.label), str(entry.get("queries", ""))]
        for name in metrics:
            value = means.get(name)
            text = "" if value is None else f"{value:.4f}"
            cells.append(f"<b>{text}</b>" if value is not None and value == best[name] else text)
        seconds = entry.get("timing", {}).get("total_s")
        cells.append("" if seconds is None else f"{seconds:.2f}")
        rows.append(cells)
    return _table(["system", "queries", *metrics, "seconds"], rows, "metrics")


def significance_tables(systems: Sequence[System]) -> str:
    if len(systems) < 2:
        return "<p>One system only: nothing to compare.</p>"
    tables = compare_systems(systems)  # the metrics every system has
    parts = []
    for name, rows in tables.items():
        body = [[html.escape(c) for c in cells(row)] for row in rows]
        parts.append(f"<h4>{html.escape(name)} ({rows[0].queries} queries)</h4>" + _table(HEADERS, body, "compare"))
    note = (
        "<p class='note'>Against the first system. ▲/▼: paired randomisation test p &lt; 0.05 (Holm-corrected "
        "over the comparisons shown); W/T/L = queries better / equal / worse.</p>"
    )
    return "".join(parts) + note


def example_rankings(output: Output, count: int, depth: int = 10, metric: str = "nDCG@10") -> str:
    """Side-by-side top-``depth`` of the first and the final ranking stage for the queries that moved most."""
    final = output.final_stage
    stages = ranking_stages(output)
    # What the final stage changed: the reranker's input, or the first retriever for a fusion.
    first = stages[stages.index(final) - 1] if final == "rerank" and len(stages) > 1 else stages[0]
    if first == final:
        return ""
    per_query = output.per_query
    before, after = per_query.get(first, {}).get(metric), per_query.get(final, {}).get(metric)
    if not before or not after:
        return ""
    moved = sorted((q for q in before if q in after), key=lambda q: (-abs(after[q] - before[q]), q))[:count]
    runs, qrels = {first: output.run(first), final: output.run(final)}, output.qrels()
    titles, questions = _texts(output)
    blocks = []
    for qid in moved:
        gold = qrels.get(qid, {})
        columns = []
        for stage in (first, final):
            items = []
            for doc_id in list(runs[stage].get(qid, {}))[:depth]:
                mark = "gold" if gold.get(doc_id, 0) > 0 else ""
                title = html.escape(titles(doc_id)[:90])
                badge = "✓ " if mark else ""
                items.append(f'<li class="{mark}">{badge}<code>{html.escape(doc_id)}</code> {title}</li>')
            score = (before if stage == first else after)[qid]
            columns.append(
                f"<div class='col'><h5>{html.escape(stage)} — {metric} {score:.3f}</h5><ol>{''.join(items)}</ol></div>"
            )
        question = html.escape(questions(qid))
        blocks.append(f"<div class='example'><p><b>{html.escape(qid)}</b>: {question}</p>{''.join(columns)}</div>")
    caption = f"<p class='note'>Gold (judged relevant) documents are marked ✓ and highlighted; top {depth} shown.</p>"
    return f"<h3>Before / after: {html.escape(first)} → {html.escape(final)}</h3>{caption}{''.join(blocks)}"


def _texts(output: Output) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """Doc title and query text lookups from the data set named in metrics.json (ids only if it cannot load)."""
    info = output.metrics.get("dataset", {})
    try:
        from rankwise.config.experiment import DataConfig
        from rankwise.experiment.datasets import DatasetSource, load_for_experiment

        source = DatasetSource(info.get("name", ""), _source_kind(info), info.get("path", ""), info.get("domain"))
        dataset = load_for_experiment(source, DataConfig(split=info.get("split", "test"), format=info.get("format")))
    except (RankwiseError, OSError, KeyError):
        return (lambda _doc: ""), (lambda _qid: "")
    corpus, queries = dataset.corpus, dataset.queries

    def title(doc_id: str) -> str:
        doc = corpus.get(doc_id)
        return "" if doc is None else (doc.title or doc.text)

    return title, (lambda qid: queries[qid].text if qid in queries else "")


def _source_kind(info: dict[str, Any]) -> str:
    return str(info.get("source", "mtrag" if info.get("domain") else "files"))


# --------------------------------------------------------------------------------------------------- report


def build_report(outputs: Sequence[Output], examples: int = 3, title: str = "rankwise report") -> str:
    """The report's HTML text for ``outputs`` (grouped by data set)."""
    by_dataset: dict[str, list[Output]] = {}
    for output in outputs:
        by_dataset.setdefault(output.metrics.get("dataset", {}).get("name", output.path.name), []).append(output)
    sections = []
    for dataset, group in by_dataset.items():
        systems = systems_of(group)
        metrics = list(dict.fromkeys(m for s in systems for m in s.means()))
        counts = group[0].metrics.get("counts", {})
        summary = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items() if isinstance(v, int))
        parts = [
            f"<section><h2>{html.escape(dataset)}</h2><p class='note'>{html.escape(summary)}</p>",
            "<h3>Metrics</h3>",
            metric_table(systems, metrics),
            "<h3>Significance</h3>",
            significance_tables(systems),
            qa_table(group),
            "<h3>Plots</h3><div class='plots'>",
            metric_bars(systems, metrics),
            sweep_plot(systems, "R", "Recall@k"),
            sweep_plot(systems, "nDCG", "nDCG@k (k sweep)"),
            latency_plot(group),
            "</div>",
        ]
        parts += [example_rankings(output, examples) for output in group if examples > 0]
        for output in group:
            for warning in output.metrics.get("warnings", []):
                parts.append(f"<p class='warning'>{html.escape(output.label)}: {html.escape(warning)}</p>")
        parts.append("</section>")
        sections.append("".join(parts))
    listing = "".join(f"<li><code>{html.escape(str(o.path))}</code> — {html.escape(o.label)}</li>" for o in outputs)
    page = TEMPLATE.read_text(encoding="utf-8")
    return (
        page.replace("{{title}}", html.escape(title))
        .replace("{{outputs}}", listing)
        .replace("{{sections}}", "".join(sections))
    )


def write_report(
    paths: Sequence[str | Path], html_path: str | Path, examples: int = 3, title: str | None = None
) -> Path:
    """Read the outputs at ``paths`` and write the report to ``html_path`` atomically."""
    outputs = load_outputs(paths)
    text = build_report(outputs, examples=examples, title=title or "rankwise report")
    atomic_write_text(html_path, text)
    return Path(html_path)
