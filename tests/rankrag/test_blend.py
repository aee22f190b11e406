"""The RankRAG blend: held-out data never enters it, the mix follows the knobs, it is deterministic, and its
ranking prompt is token for token the prompt LLMReranker scores (the completion starts at the scored position)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rankwise.config.rankrag_blend import from_mapping, load_blend_config
from rankwise.data.hotpotqa import hotpotqa_split
from rankwise.errors import DataError, RankwiseError
from rankwise.rankrag.blend import build_blend, read_blend, write_blend


@pytest.fixture(scope="module")
def tokenizer():
    from rankwise.config.models import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def sources(data_root: Path) -> dict:
    return {
        "hotpotqa": {"path": str(data_root / "hotpotqa-train100" / "hotpotqa_train.json")},
        "scifact": {"path": str(data_root / "scifact")},
        "mtrag": {"path": str(data_root / "mtrag"), "domains": ["govt"]},
    }


@pytest.fixture(scope="module")
def ranking_pool(sources, tokenizer):
    """Every ranking candidate of HotpotQA + SciFact (size far above what exists: the blend is the whole pool)."""
    config = from_mapping({"size": 100_000, "ranking_fraction": 1.0, **_pick(sources, "hotpotqa", "scifact")})
    return build_blend(config, tokenizer)


def _pick(sources: dict, *names: str) -> dict:
    return {name: dict(sources[name]) for name in names}


def test_heldout_queries_never_enter_the_blend(ranking_pool, data_root):
    from rankwise.data.hotpotqa import load_hotpotqa
    from rankwise.data.trec import read_qrels

    examples, summary = ranking_pool
    test_ids = set(read_qrels(data_root / "scifact" / "qrels" / "test.tsv"))
    train_ids = set(read_qrels(data_root / "scifact" / "qrels" / "train.tsv"))
    hotpot_train, hotpot_heldout = hotpotqa_split(load_hotpotqa(data_root / "hotpotqa-train100"), heldout=50, seed=0)
    by_source = {s: {e["query_id"] for e in examples if e["source"] == s} for s in ("scifact", "hotpotqa")}
    assert len(by_source["scifact"]) > 700 and len(by_source["hotpotqa"]) == 50
    assert by_source["scifact"] <= train_ids and not by_source["scifact"] & test_ids
    assert by_source["hotpotqa"] == set(hotpot_train) and not by_source["hotpotqa"] & set(hotpot_heldout)
    assert {"871", "1291"}.isdisjoint(by_source["scifact"])  # train claims whose text is a test claim's
    assert summary["heldout"] == {"hotpotqa": 50, "scifact": 300}
    assert len(hotpot_train) == 50 and hotpotqa_split(reversed(hotpot_train + hotpot_heldout)) == (
        hotpot_train,
        hotpot_heldout,
    )


def test_a_config_that_would_leak_is_refused(tmp_path, sources, tokenizer, data_root):
    config_file = tmp_path / "blend.yaml"
    config_file.write_text(f"size: 10\nscifact:\n  path: {data_root / 'scifact'}\n  split: test\n")
    with pytest.raises(DataError, match=r"line 4: 'scifact.split'.*held-out"):
        load_blend_config(config_file)

    from rankwise.data.hotpotqa import load_hotpotqa

    questions = {e.id: e.question for e in load_hotpotqa(sources["hotpotqa"]["path"])}
    _, heldout = hotpotqa_split(list(questions), heldout=50, seed=0)
    user = tmp_path / "qa.jsonl"
    rows = [
        {"question": "What colour is the sky?", "answer": "blue", "passages": ["The sky is blue."]},
        {"question": "  " + questions[heldout[3]].upper(), "answer": "x", "passages": ["p"]},
    ]
    user.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = from_mapping({"size": 20, **_pick(sources, "hotpotqa"), "qa_jsonl": {"path": str(user)}})
    with pytest.raises(RankwiseError, match=rf"qa.jsonl, line 2.*HotpotQA held-out question {heldout[3]}"):
        build_blend(config, tokenizer)


def test_ranking_fraction_caps_and_shrinking(sources, tokenizer):
    mix = {**_pick(sources, "hotpotqa", "mtrag"), "rag_variants": 2}
    mix["hotpotqa"]["cap"] = 60
    examples, summary = build_blend(from_mapping({"size": 200, "ranking_fraction": 0.25, **mix}), tokenizer)
    tasks = [e["task"] for e in examples]
    assert len(examples) == 200 and summary["size"] == 200
    assert sum(t in ("ranking", "rag_ranking") for t in tasks) == 50 == round(200 * summary["ranking_share"])
    assert sum(e["source"] == "hotpotqa" for e in examples) == 60 == summary["sources"]["hotpotqa"]
    assert set(tasks) == {"context_qa", "rag_qa", "ranking", "rag_ranking"}
    assert summary["labels"] == {
        label: sum(e["completion"][0]["content"] == label for e in examples if e["task"] == "ranking")
        for label in ("True", "False")
    }
    # more than the sources hold: the blend shrinks and keeps the fraction (QA runs out first here)
    big, info = build_blend(from_mapping({"size": 50_000, "ranking_fraction": 0.1, **mix}), tokenizer)
    ranking = sum(e["task"] in ("ranking", "rag_ranking") for e in big)
    assert len(big) < 50_000 and abs(ranking / len(big) - 0.1) < 1 / len(big) + 1e-9
    assert any("instead of 50000" in note for note in info["notes"])


def test_a_task_weighted_zero_never_fills_another_tasks_deficit(sources, tokenizer):
    weights = {"context_qa": 1, "rag_qa": 1, "ranking": 1, "rag_ranking": 0}
    config = from_mapping(
        {"size": 1000, "ranking_fraction": 1.0, "task_weights": weights, **_pick(sources, "hotpotqa")}
    )
    examples, summary = build_blend(config, tokenizer)
    assert {e["task"] for e in examples} == {"ranking"}  # ranking runs out; rag_ranking (weight 0) stays out
    assert len(examples) == summary["available"]["ranking"] < 1000
    assert any("instead of 1000" in note for note in summary["notes"])


def test_same_seed_same_blend_other_seed_other_blend(sources, tokenizer, tmp_path):
    settings = {"size": 120, "ranking_fraction": 0.2, **_pick(sources, "hotpotqa", "mtrag")}
    first, summary = build_blend(from_mapping(settings), tokenizer)
    again, _ = build_blend(from_mapping(settings), tokenizer)
    other, _ = build_blend(from_mapping({**settings, "seed": 1}), tokenizer)
    assert first == again and first != other
    write_blend(first, tmp_path / "a.jsonl")
    assert read_blend(tmp_path / "a.jsonl") == first
    assert summary["mean_prompt_tokens"] > 100


def test_ranking_prompt_is_the_rerankers_prompt(ranking_pool, tokenizer, data_root):
    """Rendered through the chat template, the blend prompt tokenises exactly as LLMReranker's prompt, and the
    completion ("True"/"False") is the first token after it: the position the reranker scores."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rankwise.data.beir import load_beir
    from rankwise.data.hotpotqa import hotpotqa_inputs
    from rankwise.rerank.llm import LLMReranker

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    reranker = LLMReranker(tiny, tokenizer, max_passage_tokens=128, show_progress=False)
    scifact = load_beir(data_root / "scifact", split="train")
    examples, hotpot_corpus, _ = hotpotqa_inputs(data_root / "hotpotqa-train100" / "hotpotqa_train.json")
    hotpot_questions = {e.id: e.question for e in examples}
    examples = [e for e in ranking_pool[0] if e["task"] == "ranking"]
    checked = {"True": 0, "False": 0, "truncated": 0}
    for example in examples[:: max(1, len(examples) // 40)]:
        if example["source"] == "scifact":
            doc_id = example["id"].rsplit("-", 1)[1]
            question, passage = scifact.queries[example["query_id"]].text, scifact.corpus[doc_id].contents
        else:
            question = hotpot_questions[example["query_id"]]
            passage = hotpot_corpus[example["id"].removeprefix(f"hotpotqa-rank-{example['query_id']}-")].contents
        (cut,) = reranker.truncate([passage])
        checked["truncated"] += cut != passage
        scored = tokenizer(reranker.prompt(question, cut), add_special_tokens=False)["input_ids"]
        prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        label = example["completion"][0]["content"]
        assert prompt_ids == scored
        assert full_ids[: len(scored)] == scored
        assert full_ids[len(scored)] == (reranker.true_id if label == "True" else reranker.false_id)
        checked[label] += 1
    assert min(checked.values()) > 0, checked  # both labels, and some passages really were cut


def test_qa_prompt_is_the_generators_prompt(sources, tokenizer, data_root):
    from rankwise.data.hotpotqa import hotpotqa_inputs, load_hotpotqa
    from rankwise.generate.prompts import TEMPLATES

    config = from_mapping({"size": 30, "ranking_fraction": 0.0, **_pick(sources, "hotpotqa")})
    examples, _ = build_blend(config, tokenizer)
    _, corpus, paragraphs = hotpotqa_inputs(sources["hotpotqa"]["path"])
    questions = {e.id: e for e in load_hotpotqa(sources["hotpotqa"]["path"])}
    template = replace(TEMPLATES["short"], max_passage_words=80)
    context_qa = [e for e in examples if e["task"] == "context_qa"]
    assert context_qa
    for example in context_qa:
        q = questions[example["query_id"]]
        titles = list(dict.fromkeys(t for t, _ in q.supporting_facts))
        by_title = dict(zip([t for t, _ in q.context], paragraphs[q.id], strict=True))
        gold = [corpus[by_title[t]] for t in titles]
        assert example["prompt"] == template.messages(q.question, gold)
        assert example["completion"][0]["content"] == f"{q.answer} [1] [2]"
    for example in (e for e in examples if e["task"] == "rag_qa"):
        shown = example["prompt"][1]["content"].count("\n[")
        assert shown == 5 and "[" in example["completion"][0]["content"]  # 5 passages shown, the gold cited


def test_examples_over_the_token_budget_are_rendered_shorter_to_fit(sources, tokenizer):
    from rankwise.rankrag.format import example_tokens

    settings = {"size": 60, "ranking_fraction": 0.0, "seed": 1, **_pick(sources, "mtrag", "hotpotqa")}
    free, free_summary = build_blend(from_mapping(settings), tokenizer)
    budget = 400
    fitted, summary = build_blend(from_mapping({**settings, "max_example_tokens": budget}), tokenizer)
    assert [e["id"] for e in fitted] == [e["id"] for e in free]  # the same picks, only shorter texts
    assert free_summary["shrunk_to_fit"] == {} and free_summary["max_example_tokens"] is None
    before = {e["id"]: example_tokens(tokenizer, e["prompt"], e["completion"]) for e in free}
    after = {e["id"]: example_tokens(tokenizer, e["prompt"], e["completion"]) for e in fitted}
    too_long = {i for i, n in before.items() if n > budget}
    assert too_long  # the test means something: some examples did not fit
    over = {i for i, n in after.items() if n > budget}
    assert sum(summary["shrunk_to_fit"].values()) == len(too_long - over)
    assert sum(summary["over_budget"].values()) == len(over)  # what cannot fit is counted, and noted
    assert not over or any("over max_example_tokens" in note for note in summary["notes"])
    assert len(over) < len(too_long) / 2  # most are fitted (the rest: long MT-RAG answers)
    for e in fitted:
        if e["id"] not in too_long:
            assert after[e["id"]] == before[e["id"]]  # examples that fitted are untouched
        assert e["completion"] == next(f["completion"] for f in free if f["id"] == e["id"])  # answers never cut


def test_cli_writes_the_blend_and_bad_keys_name_their_line(tmp_path, sources):
    from rankwise.cli.rankrag_blend import build_blend as command

    app = typer.Typer()
    app.command("build-blend")(command)
    app.callback()(lambda: None)
    config = tmp_path / "blend.yaml"
    config.write_text(
        f"size: 40\nranking_fraction: 0.5\nhotpotqa:\n  path: {sources['hotpotqa']['path']}\n  heldout: 50\n"
    )
    out = tmp_path / "blend.jsonl"
    result = CliRunner().invoke(app, ["build-blend", "--config", str(config), "--out", str(out), "--set", "size=20"])
    assert result.exit_code == 0, result.output
    records = read_blend(out)
    assert len(records) == 20 and sum(r["task"] in ("ranking", "rag_ranking") for r in records) == 10
    assert "RankRAG blend: 20 examples" in result.output and "ranking share 0.500" in result.output

    config.write_text(config.read_text().replace("  heldout: 50", "  heldot: 50"))
    with pytest.raises(DataError, match=r"line 5: 'hotpotqa.heldot': unknown key"):
        load_blend_config(config)
    with pytest.raises(DataError, match=r"line 2: 'ranking_fraction'"):
        load_blend_config(config, {"ranking_fraction": 1.5})
