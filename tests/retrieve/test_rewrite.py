from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.errors import DataError, RankwiseError
from rankwise.retrieve.rewrite import (
    CachedRewriter,
    GivenRewrites,
    LLMRewriter,
    clean_rewrite,
    full_history,
    last_turn,
    rewrite_names,
    rewrite_queries,
    split_turn,
)
from rankwise.types import Query

CONVERSATION = Query(
    "t1",
    "Are they the same team?",
    ("user: Where do the Arizona Cardinals play?", "agent: In Glendale, Arizona.", "And the Chicago Cardinals?"),
)


class ScriptedChat:
    """A chat model that replays canned outputs and records what it was asked."""

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = list(outputs)
        self.calls: list[list[list[dict[str, str]]]] = []

    def chat(self, conversations, max_new_tokens=None, stop=None):
        self.calls.append([list(c) for c in conversations])
        return [self.outputs.pop(0) for _ in conversations]


def test_split_turn() -> None:
    assert split_turn("agent: hi: there") == ("agent", "hi: there")
    assert split_turn("Assistant: ok") == ("agent", "ok")
    assert split_turn("note: not a speaker") == ("user", "note: not a speaker")


def test_last_turn_keeps_the_question() -> None:
    assert last_turn(CONVERSATION) == CONVERSATION


def test_full_history_joins_user_turns() -> None:
    rewritten = full_history(CONVERSATION)
    assert rewritten.text == ("Where do the Arizona Cardinals play? And the Chicago Cardinals? Are they the same team?")
    assert rewritten.history == CONVERSATION.history
    with_agent = full_history(CONVERSATION, include_agent=True)
    assert "In Glendale, Arizona." in with_agent.text


def test_llm_rewriter_prompts_cleans_and_falls_back() -> None:
    chat = ScriptedChat(['Standalone question: "Are the Arizona and Chicago Cardinals the same team?"\nextra', "  "])
    rewriter = LLMRewriter(chat, max_turns=2, max_turn_words=2)
    queries = {
        "t1": CONVERSATION,
        "t2": Query("t2", "What about it?", ("user: Tell me about X",)),
        "t3": Query("t3", "A standalone question"),
    }
    out = rewriter.rewrite(queries)
    assert out["t1"].text == "Are the Arizona and Chicago Cardinals the same team?"
    assert out["t2"].text == "What about it?"  # empty rewrite -> the question, counted
    assert out["t3"] == queries["t3"]  # no history -> no model call
    assert rewriter.fallbacks == 1
    assert len(chat.calls) == 1 and len(chat.calls[0]) == 2
    user = chat.calls[0][0][1]["content"]
    # two most recent turns, two words each
    assert "agent: In Glendale, ...\nuser: And the ..." in user
    assert "Where do" not in user
    assert user.endswith("Last question: Are they the same team?\n\nStandalone question:")


def test_clean_rewrite() -> None:
    assert clean_rewrite("\n  Rewritten question: “Who won?”  \nmore") == "Who won?"
    assert clean_rewrite("") == ""


def test_cached_rewriter_reuses_and_extends_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rewrites.jsonl"
    chat = ScriptedChat(["First rewrite", "Second rewrite"])
    cached = CachedRewriter(LLMRewriter(chat), path)
    assert cached.rewrite({"t1": CONVERSATION})["t1"].text == "First rewrite"
    again = CachedRewriter(LLMRewriter(chat), path)
    assert again.rewrite({"t1": CONVERSATION})["t1"].text == "First rewrite"
    assert len(chat.calls) == 1  # served from the file
    changed = Query("t1", "A different question?", CONVERSATION.history)
    assert again.rewrite({"t1": changed})["t1"].text == "Second rewrite"  # question changed -> new rewrite
    assert len(path.read_text().splitlines()) == 2


def test_cached_rewriter_rejects_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "rewrites.jsonl"
    path.write_text('{"id": "t1", "question": "q"}\n')
    with pytest.raises(DataError, match="line 1"):
        CachedRewriter(LLMRewriter(ScriptedChat([])), path)


def test_rewrite_queries_by_name() -> None:
    queries = {"t1": CONVERSATION}
    assert rewrite_queries(queries, "last_turn") == queries
    assert rewrite_queries(queries, "full_history")["t1"].text.startswith("Where do")
    with pytest.raises(RankwiseError, match="needs a LLMRewriter"):
        rewrite_queries(queries, "llm")
    with pytest.raises(RankwiseError, match="unknown rewrite strategy 'magic'"):
        rewrite_queries(queries, "magic")
    with pytest.raises(RankwiseError, match="chat"):
        LLMRewriter(object())


def test_cached_rewriter_saves_each_chunk(tmp_path: Path) -> None:
    path = tmp_path / "rewrites.jsonl"
    chat = ScriptedChat(["Rewrite one"])  # a second call fails: nothing left to replay
    queries = {"a": CONVERSATION, "b": Query("b", "And then?", ("user: earlier",))}
    with pytest.raises(IndexError):
        CachedRewriter(LLMRewriter(chat), path, chunk_size=1).rewrite(queries)
    assert path.read_text().count("\n") == 1  # the first chunk was kept
    resumed = CachedRewriter(LLMRewriter(ScriptedChat(["Rewrite two"])), path, chunk_size=1).rewrite(queries)
    assert [q.text for q in resumed.values()] == ["Rewrite one", "Rewrite two"]


def test_human_strategy_uses_the_given_rewrites_and_refuses_gaps() -> None:
    second = Query("t2", "Who won?", ("user: The 1947 NFL title game?",))
    queries = {"t1": CONVERSATION, "t2": second}
    given = GivenRewrites({"t1": " Are the Arizona and Chicago Cardinals the same team? ", "t2": "Who won in 1947?"})
    rewritten = rewrite_queries(queries, "human", given)
    assert [q.text for q in rewritten.values()] == [
        "Are the Arizona and Chicago Cardinals the same team?",
        "Who won in 1947?",
    ]
    assert rewritten["t2"].history == second.history and rewritten["t1"].id == "t1"
    assert "human" in rewrite_names() and "llm" in rewrite_names()
    with pytest.raises(RankwiseError, match=r"MT-RAG human rewrites: no rewrite for 1 of 2 queries \(e.g. 't2'\)"):
        rewrite_queries(queries, "human", GivenRewrites({"t1": "x", "t2": "  "}, source="MT-RAG human rewrites"))
    with pytest.raises(RankwiseError, match="'human' rewrite strategy needs a GivenRewrites"):
        rewrite_queries(queries, "human")
    with pytest.raises(RankwiseError, match="'human' rewrite strategy needs a GivenRewrites"):
        rewrite_queries(queries, "human", LLMRewriter(ScriptedChat([])))
    with pytest.raises(RankwiseError, match="'llm' rewrite strategy needs a LLMRewriter"):
        rewrite_queries(queries, "llm", given)
