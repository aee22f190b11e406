"""The answer-only loss equals the model's own label loss, and touches only the labelled positions' logits."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rankwise.rankrag.answer_loss import answer_loss, takes_logits_to_keep


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def batch() -> dict[str, torch.Tensor]:
    input_ids = torch.randint(0, 64, (3, 10))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 7:] = 0  # right padding
    labels = torch.full_like(input_ids, -100)
    labels[0, 8:] = input_ids[0, 8:]
    labels[1, 5:7] = input_ids[1, 5:7]
    labels[2, 6] = input_ids[2, 6]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_answer_loss_equals_the_models_own_loss_and_gradients() -> None:
    model, inputs = tiny_llama(), batch()
    ours = answer_loss(model, inputs)
    ours.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    theirs = model(**inputs).loss
    theirs.backward()
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert all(torch.allclose(grads[n], p.grad, atol=1e-6) for n, p in model.named_parameters())
    # trl's normalisation: the global token count when the trainer passes one
    assert torch.allclose(answer_loss(model, inputs, num_items_in_batch=10), ours * 5 / 10, atol=1e-6)


def test_only_the_labelled_positions_reach_the_output_head() -> None:
    model, inputs = tiny_llama(), batch()
    rows: list[int] = []
    model.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[1]))
    answer_loss(model, inputs)
    assert rows == [4]  # labels at 8-9, 5-6 and 6 are predicted from positions {7, 8} ∪ {4, 5} ∪ {5}


def test_stats_count_the_labelled_tokens_and_their_top1_hits() -> None:
    model, inputs = tiny_llama(), batch()
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, :-1]
    inputs["labels"][0, 9] = logits[0, 8].argmax()  # one label the model gets right (labels don't change logits)
    stats: dict[str, torch.Tensor] = {}
    answer_loss(model, inputs, stats=stats)
    targets = inputs["labels"][:, 1:]
    mask = targets != -100
    log_probs = logits[mask].log_softmax(-1)
    assert stats["valid"].item() == 5
    assert stats["correct"].item() >= 1
    assert stats["correct"].item() == (log_probs.argmax(-1) == targets[mask]).sum().item()
    assert torch.allclose(stats["entropy"], -(log_probs.exp() * log_probs).sum(), atol=1e-5)


def test_a_batch_without_labels_gives_a_differentiable_zero() -> None:
    model, inputs = tiny_llama(), batch()
    inputs["labels"] = torch.full_like(inputs["labels"], -100)
    loss = answer_loss(model, inputs)
    loss.backward()
    assert loss.item() == 0.0


def test_llama_takes_logits_to_keep() -> None:
    assert takes_logits_to_keep(tiny_llama())
