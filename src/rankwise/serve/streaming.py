"""Token streaming for a local transformers generator, and the stop-string guard for streamed text.

:func:`stream_local` answers one request exactly as :meth:`LocalGenerator.generate_batch` does for a batch of
one (same fitted passages, prompt, decoding options and answer parsing), while handing each piece of decoded text
to ``emit`` as the model produces it. The returned :class:`Answer` is built from the generated token ids, not
from the streamed pieces, so it equals the unstreamed answer; ``tests/serve`` checks that.

:class:`StopGuard` holds back streamed text that could still turn out to be the start of a stop string, and
drops everything from a stop string on, so a client never sees text the final answer does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rankwise.generate.answer import Answer
from rankwise.generate.base import GenerationRequest
from rankwise.generate.citations import apply_stop_strings, build_answer
from rankwise.generate.local import LocalGenerator
from rankwise.generate.prompts import sentence_counts


class StopGuard:
    """Feed streamed pieces in; ``emit`` gets only text that comes before every stop string."""

    def __init__(self, stop: Sequence[str], emit: Callable[[str], None]) -> None:
        self.stop = tuple(s for s in stop if s)
        self.emit = emit
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, piece: str) -> None:
        if self.stopped or not piece:
            return
        self.text += piece
        cut = apply_stop_strings(self.text, self.stop)
        if len(cut) < len(self.text):
            self.stopped = True
            safe = len(cut)
        else:
            safe = len(self.text) - self._held()
        if safe > self.sent:
            self.emit(self.text[self.sent : safe])
            self.sent = safe

    def close(self) -> None:
        """The stream ended: what was held back is not a stop string after all."""
        if not self.stopped and len(self.text) > self.sent:
            self.emit(self.text[self.sent :])
            self.sent = len(self.text)

    def _held(self) -> int:
        """Length of the longest end of the text that is the beginning of a stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest


def can_stream(generator: Any) -> bool:
    return isinstance(generator, LocalGenerator)


def stream_local(generator: Any, request: GenerationRequest, emit: Callable[[str], None]) -> Answer:
    """Answer ``request`` with a :class:`LocalGenerator`, streaming decoded text to ``emit`` (see the module doc)."""
    import torch
    from transformers import TextStreamer

    fitted = generator.fit(request)
    messages = generator.template.messages(fitted.question, fitted.passages, fitted.history)
    model, tokenizer = generator.model_and_tokenizer()
    stop = tuple(s for s in generator.stop if s)
    guard = StopGuard(stop, emit)

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            guard.feed(text)

    # The decoding options of LocalGenerator.chat, for one prompt.
    options: dict[str, Any] = {
        "max_new_tokens": generator.max_new_tokens,
        "do_sample": generator.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if generator.do_sample:
        options["temperature"] = generator.temperature
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    if stop:
        options.update(stop_strings=list(stop), tokenizer=tokenizer)
    encoded = tokenizer([generator.render(messages)], return_tensors="pt", add_special_tokens=False)
    inputs = {key: encoded[key].to(model.device) for key in ("input_ids", "attention_mask")}
    streamer = Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.inference_mode():
        generated = model.generate(**inputs, **options, streamer=streamer)
    guard.close()
    text = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    raw = apply_stop_strings(text, stop)
    # The answer parsing of ChatGenerator.generate_batch.
    passages = fitted.passages
    answer = build_answer(
        apply_stop_strings(raw, generator.stop),
        [p.id for p in passages],
        abstain_phrases=generator.abstain_phrases,
        sentence_counts=sentence_counts(passages) if generator.template.number_sentences else None,
    )
    answer.meta["passages_shown"] = len(passages)
    if len(passages) < len(request.passages):
        answer.meta["passages_dropped_to_fit"] = len(request.passages) - len(passages)
    return answer
