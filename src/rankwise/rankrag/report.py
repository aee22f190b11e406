"""The ranking-fraction study's Markdown table and PNG plot, from what ``sweep.json`` holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankwise.data.files import atomic_writer


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _trained(model: dict[str, Any]) -> str:
    """``kept / blend`` examples (trl drops those cut before their answer); "–" for zero-shot or older sweeps."""
    if model.get("examples_trained") is None:
        return "–"
    return f"{model['examples_trained']} / {model.get('examples')}"


def _versus(paired: dict[str, Any] | None) -> str:
    """``+0.0123 (p 0.45; 12 better, 9 worse)`` (the format); "–" where there is no paired comparison."""
    if not paired:
        return "–"
    better, worse = paired["wins"], paired["losses"]
    return f"{paired['delta']:+.4f} (p {paired['p_permutation']:.2g}; {better} better, {worse} worse)"


def _abstains(mtrag: dict[str, Any] | None) -> str:
    if not mtrag:
        return ""
    seen = " (domain in the blend)" if mtrag.get("domain_in_blend") else ""
    return f"{_fmt(mtrag.get('abstained_unanswerable'), 2)} / {_fmt(mtrag.get('abstained_answerable'), 2)}{seen}"


def ordered(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Zero-shot first, then by ranking fraction (the sweep may train them in any order)."""
    return sorted(models, key=lambda m: -1.0 if m["fraction"] is None else m["fraction"])


def markdown_table(results: dict[str, Any]) -> str:
    """One row per model (zero-shot, then each fraction), plus BM25 alone for the ranking column."""
    header = (
        "| model | ranking fraction | steps | examples trained | train s | SciFact nDCG@10 | SciFact RR@10 "
        "| vs BM25 | HotpotQA EM | F1 | SP-F1 | no-rerank EM | no-rerank F1 | no-rerank SP-F1 "
        "| MT-RAG abstains: unanswerable / answerable |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    bm25 = results.get("bm25", {})
    rows = [f"| BM25 alone | – | – | – | – | {_fmt(bm25.get('nDCG@10'))} | {_fmt(bm25.get('RR@10'))} |" + " |" * 8]
    for model in ordered(results["models"]):
        ranking = model.get("ranking", {})
        qa = model.get("hotpotqa", {})
        plain = model.get("hotpotqa_no_rerank", {})
        fraction = "–" if model["fraction"] is None else format(model["fraction"], "g")
        rows.append(
            f"| {model['name']} | {fraction} | {model['steps']} | {_trained(model)} "
            f"| {_fmt(model['train_seconds'], 0)} "
            f"| {_fmt(ranking.get('nDCG@10'))} | {_fmt(ranking.get('RR@10'))} | {_versus(ranking.get('vs_bm25'))} "
            f"| {_fmt(qa.get('em'))} | {_fmt(qa.get('f1'))} | {_fmt(qa.get('sp_paragraph_f1'))} "
            f"| {_fmt(plain.get('em'))} | {_fmt(plain.get('f1'))} | {_fmt(plain.get('sp_paragraph_f1'))} "
            f"| {_abstains(model.get('mtrag'))} |"
        )
    heldout = results.get("hotpotqa_heldout", {})
    hotpotqa = (
        f"HotpotQA: {heldout.get('questions', 0)} held-out questions (split seed {heldout.get('seed')}), distractor "
        "setting, the same model reranks and answers; no-rerank = BM25 order, same model answers. SP-F1 = "
        "supporting-paragraph F1 of the citations. "
        if heldout
        else "HotpotQA: not evaluated. "
    )
    note = (
        f"\nSciFact: P(True) reranking of BM25 top-{results['config']['eval']['depth']} for the first "
        f"{results['config']['eval']['scifact_queries']} test queries. {hotpotqa}"
        "vs BM25: the mean per-query nDCG@10 difference from BM25's own order, the paired randomisation test's "
        "two-sided p, and the queries where the model ranks better/worse. "
        "Examples trained: blend examples trl kept (it drops those that max_length cuts before their answer). "
        "MT-RAG: the share of UNANSWERABLE / ANSWERABLE generation tasks of eval.mtrag_domain the model abstains on "
        "(pooled corpus; BM25, then the model reranks and answers).\n"
    )
    return header + "\n".join(rows) + "\n" + note


def plot(results: dict[str, Any], path: str | Path) -> None:
    """nDCG@10 and HotpotQA EM/F1/SP-F1 against the ranking fraction (categorical axis), zero-shot and BM25 as
    dashed lines, steps and training seconds in the tick labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tuned = [m for m in ordered(results["models"]) if m["fraction"] is not None]
    zero = next((m for m in results["models"] if m["fraction"] is None), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(len(tuned)))
    labels = [f"{m['fraction']:g}\n{m['steps']} st, {m['train_seconds'] or 0:.0f} s" for m in tuned]
    left, right = axes
    left.plot(xs, [m.get("ranking", {}).get("nDCG@10") for m in tuned], "o-", label="tuned (P(True))")
    if zero is not None:
        left.axhline(zero["ranking"]["nDCG@10"], color="grey", linestyle="--", label="zero-shot")
    if results.get("bm25"):
        left.axhline(results["bm25"]["nDCG@10"], color="black", linestyle=":", label="BM25 alone")
    left.set_title("SciFact test: rerank BM25 top-20, nDCG@10")
    for key, label in (("em", "EM"), ("f1", "F1"), ("sp_paragraph_f1", "SP-F1")):
        line = right.plot(xs, [m.get("hotpotqa", {}).get(key) for m in tuned], "o-", label=label)[0]
        if zero is not None and zero.get("hotpotqa"):
            right.axhline(zero["hotpotqa"][key], color=line.get_color(), linestyle="--", alpha=0.6)
    right.set_title("HotpotQA held-out (dashed: zero-shot)")
    for axis in axes:
        axis.set_xticks(xs, labels, fontsize=8)
        axis.set_xlabel("ranking fraction (steps, training seconds)")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def curve_plot(results: dict[str, Any], path: str | Path) -> None:
    """``rankwise rankrag eval``: nDCG@10 and HotpotQA F1 of each evaluated model, in the order given (e.g. the
    checkpoints of one run: a learning curve), BM25 alone as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    xs = list(range(len(models)))
    fig, axis = plt.subplots(figsize=(7, 4))
    axis.plot(xs, [m.get("ranking", {}).get("nDCG@10") for m in models], "o-", label="SciFact nDCG@10 (P(True))")
    if any(m.get("hotpotqa") for m in models):
        axis.plot(xs, [m.get("hotpotqa", {}).get("f1") for m in models], "s-", label="HotpotQA F1")
    if results.get("bm25"):
        axis.axhline(results["bm25"]["nDCG@10"], color="black", linestyle=":", label="BM25 alone (nDCG@10)")
    labels = [m["name"] if m.get("steps") is None else f"{m['name']}\n{m['steps']} steps" for m in models]
    axis.set_xticks(xs, labels, fontsize=7)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_writer(path) as handle:  # text handle: write the PNG through its binary buffer
        fig.savefig(handle.buffer, format="png", dpi=110)
    plt.close(fig)
