"""Pointwise LLM reranking as in RankRAG: score = P(True) / (P(True) + P(False)) for the next token.

Each (question, passage) pair becomes one prompt (``template``, the RankRAG ranking instruction by default),
wrapped in the model's chat template with the assistant turn opened, so the next token is the answer. The
score is ``sigmoid(logit[True] - logit[False])``, which equals P(True) / (P(True) + P(False)) and cannot
underflow. Passages are cut to ``max_passage_tokens`` first, so a long passage never pushes the question out.
The messages come from :func:`ranking_messages`, which RankRAG training uses too, so both see the same prompt.

Prompts are batched with left padding (the next-token logits are then at the last position of every row) and
explicit position ids, so a padded row scores the same as the prompt alone. Speed without changing the scores:
identical (question, passage) pairs are scored once; the token prefix every prompt shares (chat header, template
start) runs once and its KV cache is reused by every batch; a model loaded in bf16 (``precision: auto`` where bf16
is native) keeps the last step, the True-minus-False margin of the output layer, in fp32. Models load from a hub name, a
local checkpoint or a GGUF file (``"smollm2"`` = the bundled SmolLM2-135M-Instruct, the offline default).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.rerank.base import Reranker, progress

# The RankRAG ranking instruction (arXiv 2407.02485, "access" sic), with the passage given first.
DEFAULT_TEMPLATE = (
    "Passage: {passage}\n\n"
    "For the question {question}, access whether the passage is relevant to the question. "
    "Answer True or False."
)


def format_prompt(template: str, question: str, passage: str) -> str:
    """Fill ``template``; it must name both ``{question}`` and ``{passage}``."""
    for field in ("{question}", "{passage}"):
        if field not in template:
            raise RankwiseError(f"LLM reranker template must contain {field}: {template!r}")
    return template.replace("{question}", question).replace("{passage}", passage)


def ranking_messages(
    question: str, passage: str, template: str = DEFAULT_TEMPLATE, system_prompt: str | None = None
) -> list[dict[str, str]]:
    """The chat messages for one (already truncated) pair: the ranking prompt as the user turn, after an
    optional system turn. The reranker scores the token after these (rendered with the generation prompt);
    RankRAG training (:mod:`rankwise.rankrag.blend`) puts "True"/"False" there."""
    messages = [{"role": "user", "content": format_prompt(template, question, passage)}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def truncate_passages(tokenizer: Any, passages: Sequence[str], max_tokens: int) -> list[str]:
    """Cut each passage to ``max_tokens`` tokens of ``tokenizer`` (decoded back to text); shorter ones are kept."""
    encoded = tokenizer(list(passages), add_special_tokens=False)["input_ids"]
    return [
        text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])
        for text, ids in zip(passages, encoded, strict=True)
    ]


class LLMReranker(Reranker):
    """Rerank with a causal LM's P(True); ``model`` is a name/path/GGUF (see :mod:`rankwise.config.models`) or a model.

    Pass ``tokenizer`` together with a loaded ``model``. ``use_chat_template=None`` means: use it when the
    tokenizer has one. ``true_token``/``false_token`` must each be a single token for the tokenizer.
    """

    def __init__(
        self,
        model: Any = "smollm2",
        tokenizer: Any = None,
        gguf_file: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        system_prompt: str | None = None,
        use_chat_template: bool | None = None,
        true_token: str = "True",
        false_token: str = "False",
        max_passage_tokens: int = 256,
        batch_size: int = 8,
        max_tokens: int = 4096,
        dtype: str = "float32",
        device: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        share_prefix: bool = True,
    ) -> None:
        from rankwise.config.models import load_causal_lm

        format_prompt(template, "", "")  # validate early
        if batch_size < 1 or max_tokens < 1 or max_passage_tokens < 1:
            raise RankwiseError("batch_size, max_tokens and max_passage_tokens must be positive")
        if isinstance(model, str):
            model, loaded_tokenizer = load_causal_lm(model, gguf_file, dtype, trust_remote_code, device)
            tokenizer = tokenizer or loaded_tokenizer
        elif tokenizer is None:
            raise RankwiseError("LLMReranker: pass the tokenizer together with a loaded model")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer = model, tokenizer
        self.template, self.system_prompt = template, system_prompt
        self.use_chat_template = bool(tokenizer.chat_template) if use_chat_template is None else use_chat_template
        if self.use_chat_template and not tokenizer.chat_template:
            raise RankwiseError("use_chat_template is set but the tokenizer has no chat template")
        self.true_id = self._single_token(true_token)
        self.false_id = self._single_token(false_token)
        self.max_passage_tokens = max_passage_tokens
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.show_progress, self.share_prefix = show_progress, share_prefix
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._head = self._fp32_head()

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise RankwiseError(f"answer word {word!r} is {len(ids)} tokens for this tokenizer; pick a 1-token word")
        return int(ids[0])

    def truncate(self, passages: Sequence[str]) -> list[str]:
        """Cut each passage to ``max_passage_tokens`` tokens (decoded back to text)."""
        return truncate_passages(self.tokenizer, passages, self.max_passage_tokens)

    def prompt(self, question: str, passage: str) -> str:
        """The exact text fed to the model for one (already truncated) pair."""
        messages = ranking_messages(question, passage, self.template, self.system_prompt)
        if not self.use_chat_template:
            return messages[-1]["content"]  # the bare prompt; a system prompt needs a chat template
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        unique = list(dict.fromkeys((question, passage) for question, passage in pairs))  # each pair scored once
        passages = self.truncate([passage for _, passage in unique])
        prompts = [self.prompt(question, passage) for (question, _), passage in zip(unique, passages, strict=True)]
        encoded = self.tokenizer(prompts, add_special_tokens=not self.use_chat_template)["input_ids"]
        scores = dict(zip(unique, self.score_token_ids(encoded), strict=True))
        return [scores[(question, passage)] for question, passage in pairs]

    def score_token_ids(self, encoded: Sequence[Sequence[int]]) -> list[float]:
        """Scores for already tokenised prompts, batched longest first under the ``max_tokens`` budget.

        The token prefix all prompts share (the chat header and the template's start) runs once; its KV cache is
        repeated over each batch, which then feeds only the rest of every prompt (``share_prefix``).
        """
        import numpy as np
        import torch

        shared = shared_prefix_length(encoded) if self.share_prefix and len(encoded) > 1 else 0
        lengths = np.array([len(ids) for ids in encoded])
        order = np.argsort(-lengths, kind="stable")
        scores = np.empty(len(encoded), dtype=np.float64)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), progress(len(encoded), self.show_progress, "LLM reranking") as advance:
                prefix = self._prefix_cache(encoded[0][:shared]) if shared else None
                start = 0
                while start < len(order):
                    width = int(lengths[order[start]])
                    size = max(1, min(self.batch_size, self.max_tokens // max(width, 1)))
                    batch = order[start : start + size]
                    margin = self._margins([encoded[i][shared:] for i in batch], prefix, shared)
                    scores[batch] = torch.sigmoid(margin).cpu().numpy()
                    start += size
                    advance(len(batch))
        finally:
            self.model.train(was_training)
        return scores.tolist()

    def _prefix_cache(self, prefix: Sequence[int]) -> Any:
        import torch

        device = next(self.model.parameters()).device
        ids = torch.tensor([list(prefix)], dtype=torch.long, device=device)
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keeps_logits else {}
        return self.model(input_ids=ids, use_cache=True, **kwargs).past_key_values

    def _margins(self, rows: Sequence[Sequence[int]], prefix: Any, shared: int) -> Any:
        """``logit[True] - logit[False]`` (fp32) of the next token after each row, left padded into one batch; after
        a ``prefix`` cache of ``shared`` tokens the padding sits between the prefix and the row, masked out."""
        import copy

        import torch

        device = next(self.model.parameters()).device
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):  # left padding: the prompt ends at the last column
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + shared
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keeps_logits else {}
        if prefix is not None:
            cache = copy.deepcopy(prefix)  # the forward pass appends to the cache it is given
            cache.batch_repeat_interleave(len(rows))
            mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), mask], dim=1)
            kwargs.update(past_key_values=cache, use_cache=True)
        inputs = {
            "input_ids": input_ids.to(device),
            "attention_mask": mask.to(device),
            "position_ids": positions.to(device),
        }
        if self._head is None:
            logits = self.model(**inputs, **kwargs).logits[:, -1, :]
            return logits[:, self.true_id].float() - logits[:, self.false_id].float()
        kwargs.pop("logits_to_keep", None)
        hidden = self._head[0](**inputs, **kwargs).last_hidden_state[:, -1, :]
        return hidden.float() @ self._head[1] + self._head[2]

    def _fp32_head(self) -> tuple[Any, Any, Any] | None:
        """For a model in reduced precision: ``(its base model, w, b)`` with ``margin = hidden @ w + b`` in fp32
        (the True row minus the False row of the output layer), so that the last step, where bf16 would round
        logits of ~20 to steps of 0.125, stays exact. None (use the logits) for fp32 models and for output layers
        that do more than a linear map (a logit scale or soft-capping)."""
        import torch

        head, base = self.model.get_output_embeddings(), getattr(self.model, self.model.base_model_prefix, None)
        config = self.model.config
        special = any(getattr(config, key, None) for key in ("final_logit_softcapping", "logit_scale"))
        if next(self.model.parameters()).dtype == torch.float32 or not isinstance(head, torch.nn.Linear):
            return None
        if base is None or special:
            return None
        weight = (head.weight[self.true_id] - head.weight[self.false_id]).detach().float()
        bias = 0.0 if head.bias is None else float(head.bias[self.true_id] - head.bias[self.false_id])
        return base, weight, bias


def shared_prefix_length(encoded: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all prompts share, leaving at least one token of every prompt to feed."""
    shortest = min(len(ids) for ids in encoded)
    common = 0
    first = encoded[0]
    while common < shortest - 1 and all(ids[common] == first[common] for ids in encoded):
        common += 1
    return common
