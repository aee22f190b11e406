"""Generation with a local transformers causal LM: a hub name, a local directory or a GGUF file.

The offline default is the bundled SmolLM2-135M-Instruct GGUF (``model="smollm2"``, see
:mod:`rankwise.config.models`). Prompts go through the tokenizer's chat template when it has one (a plain
``System:/User:/Assistant:`` rendering otherwise). Decoding is greedy unless ``do_sample`` is set; prompts are
batched (left padding, sorted by length) and cut at ``stop`` strings. A prompt that would not fit the model's
context window loses its last passages first, and the answer records how many were dropped.

``threads`` sets torch's intra-op thread count when the model loads (a process-wide setting, applied only when
asked): on a busy shared CPU ``threads=1`` decodes several times faster than two threads fighting for cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rankwise.config.models import load_causal_lm
from rankwise.errors import RankwiseError
from rankwise.generate.base import ChatGenerator, GenerationRequest, Message
from rankwise.generate.citations import apply_stop_strings
from rankwise.generate.prompts import PromptTemplate, messages_to_text


class LocalGenerator(ChatGenerator):
    """``generate(question, passages, history=()) -> Answer`` with a transformers causal LM on this machine."""

    def __init__(
        self,
        model: str = "smollm2",
        gguf_file: str | None = None,
        template: PromptTemplate | str = "default",
        max_new_tokens: int = 96,
        batch_size: int = 4,
        stop: Sequence[str] = (),
        do_sample: bool = False,
        temperature: float = 1.0,
        dtype: str = "float32",
        device: str | None = None,
        trust_remote_code: bool = False,
        max_input_tokens: int | None = None,
        threads: int | None = None,
        abstain_phrases: Sequence[str] | None = None,
        show_progress: bool = True,
    ) -> None:
        super().__init__(template, max_new_tokens, stop, abstain_phrases)
        if batch_size < 1:
            raise RankwiseError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.gguf_file = gguf_file
        self.batch_size = batch_size
        self.do_sample = do_sample
        self.temperature = temperature
        self.dtype = dtype
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.max_input_tokens = max_input_tokens
        self.threads = threads
        self.show_progress = show_progress
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_pretrained_objects(cls, model: Any, tokenizer: Any, **kwargs: Any) -> LocalGenerator:
        """Wrap an already-loaded model and tokenizer (tests, or a model just trained in this process)."""
        generator = cls(model=getattr(model, "name_or_path", "in-memory"), **kwargs)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        generator._model, generator._tokenizer = model.eval(), tokenizer
        return generator

    def model_and_tokenizer(self) -> tuple[Any, Any]:
        """The loaded ``(model, tokenizer)`` (loading them on first use), e.g. to share with an LLM reranker."""
        return self._load()

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            if self.threads is not None:
                import torch

                # On a shared CPU one intra-op thread is often several times faster than two (no barrier waits).
                torch.set_num_threads(self.threads)

            self._model, self._tokenizer = load_causal_lm(
                self.model_name,
                gguf_file=self.gguf_file,
                dtype=self.dtype,
                trust_remote_code=self.trust_remote_code,
                device=self.device,
            )
        return self._model, self._tokenizer

    @property
    def context_limit(self) -> int:
        """Most prompt tokens allowed: ``max_input_tokens`` or the model's positions minus the answer budget."""
        model, _ = self._load()
        if self.max_input_tokens is not None:
            return self.max_input_tokens
        config = model.config
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
        return int(positions) - self.max_new_tokens

    def render(self, messages: Sequence[Message]) -> str:
        _, tokenizer = self._load()
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
        return messages_to_text(messages)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        _, tokenizer = self._load()
        return len(tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    def fit(self, request: GenerationRequest) -> GenerationRequest:
        limit = self.context_limit
        passages = request.passages
        while True:
            messages = self.template.messages(request.question, passages, request.history)
            if self.prompt_tokens(messages) <= limit:
                return GenerationRequest(request.question, passages, request.history)
            if not passages:
                raise RankwiseError(
                    f"the prompt for question {request.question[:60]!r} does not fit the model's context of "
                    f"{limit} tokens even without passages; shorten the history or raise max_input_tokens"
                )
            passages = passages[:-1]

    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Greedy (or sampled) completions for each chat, batched; returned in input order."""
        import torch

        model, tokenizer = self._load()
        stop = tuple(s for s in (stop if stop is not None else self.stop) if s)
        texts = [self.render(c) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs: list[str] = [""] * len(texts)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        tokenizer.padding_side = "left"
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "do_sample": self.do_sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if self.do_sample:
            options["temperature"] = self.temperature
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=tokenizer)
        for batch in _progress(batches, "generating", self.show_progress and len(batches) > 1):
            encoded = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = {key: encoded[key].to(model.device) for key in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                generated = model.generate(**inputs, **options)
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            for row, i in enumerate(batch):
                text = tokenizer.decode(new_tokens[row], skip_special_tokens=True)
                outputs[i] = apply_stop_strings(text, stop)
        return outputs


def _progress(items: list[Any], label: str, enabled: bool) -> Any:
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=label, transient=True)
