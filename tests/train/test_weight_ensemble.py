"""WiSE-FT for the dense encoder: interpolation, the dev pick, and a trained head saved at the picked alpha."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from rankwise.config.train_retriever import load_config
from rankwise.retrieve.encode import build_random_encoder
from rankwise.train.weight_ensemble import GRID, apply_wise_ft, interpolate, pick_alpha, snapshot


def test_interpolation_reaches_both_ends_and_leaves_frozen_weights_alone() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    start = snapshot(model)
    assert set(start) == {"1.weight", "1.bias"}
    with torch.no_grad():
        model[1].weight.add_(1.0)
    end = snapshot(model)
    interpolate(model, start, end, 0.0)
    assert torch.equal(model[1].weight, start["1.weight"])
    interpolate(model, start, end, 0.3)
    assert torch.allclose(model[1].weight, start["1.weight"] + 0.3)
    interpolate(model, start, end, 1.0)
    assert torch.equal(model[1].weight, end["1.weight"]) and torch.equal(model[0].weight, frozen)


def test_pick_takes_the_smallest_alpha_within_the_tolerance() -> None:
    curve = {0.0: 0.60, 0.3: 0.695, 0.5: 0.70, 1.0: 0.71}
    assert pick_alpha(curve, 0.005) == 1.0
    assert pick_alpha(curve, 0.01) == 0.5
    assert pick_alpha(curve, 0.02) == 0.3
    assert pick_alpha({0.0: 0.5, 0.5: 0.5}, 0.0) == 0.0  # a tie goes to the base model


def test_auto_scores_the_whole_grid_and_ends_at_the_pick() -> None:
    model = nn.Linear(1, 1, bias=False)
    start = snapshot(model)
    with torch.no_grad():
        model.weight.copy_(start["weight"] + 1.0)
    # dev score peaks at alpha 0.6, flat within 0.01 from 0.4 up
    score = lambda: 1.0 - abs(float(model.weight.detach() - start["weight"]) - 0.6) / 20  # noqa: E731
    done = apply_wise_ft(model, start, "auto", 0.01, score)
    assert list(done["dev_ndcg@10"]) == [str(a) for a in GRID]
    assert done["alpha"] == 0.4
    assert float(model.weight.detach() - start["weight"]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="dev split"):
        apply_wise_ft(model, start, "auto", 0.01, None)


def test_config_refuses_an_alpha_outside_zero_one(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: out\ndata: x\nwise_ft: 1.5\n")
    with pytest.raises(Exception, match="wise_ft"):
        load_config(path)
    path.write_text("output_dir: out\ndata: x\nwise_ft: auto\ndev_queries: 0\n")
    with pytest.raises(Exception, match="dev"):
        load_config(path)


@pytest.fixture(scope="module")
def tiny(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.set_num_threads(1)
    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


def test_trained_head_is_saved_at_the_dev_picked_alpha(tiny: str, scifact_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from rankwise.train.retriever import train_retriever

    passages = tmp_path / "passages.jsonl"
    with (scifact_dir / "corpus.jsonl").open() as source, passages.open("w") as out:
        for _, line in zip(range(200), source, strict=False):
            out.write(json.dumps({k: json.loads(line)[k] for k in ("_id", "title", "text")}) + "\n")
    settings = {"output_dir": str(tmp_path / "out"), "passages": str(passages), "model": tiny, "freeze_base": True}
    settings |= {"num_negatives": 0, "dev_queries": 20, "batch_size": 8, "max_steps": 6, "eval_steps": 6}
    settings |= {"lr_head": 0.05, "max_seq_length": 64, "threads": 1, "device": "cpu", "diagnostics_sample": 32}
    settings |= {"wise_ft": 0.0}
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(settings))
    summary = train_retriever(load_config(tmp_path / "c.yaml"), show_progress=False)
    curve = summary["wise_ft"]["dev_ndcg@10"]
    assert len(curve) == 11 and summary["wise_ft"]["alpha"] == 0.0
    assert curve["0.0"] == pytest.approx(summary["before"]["dev_ndcg@10"], abs=1e-4)  # alpha 0 is the base model
    assert summary["head_sha256"]["initial"] == summary["head_sha256"]["final"]  # saved: the identity head
    head = SentenceTransformer(summary["model_dir"], device="cpu")[2]  # Transformer, Pooling, the head, Normalize
    assert torch.equal(head.linear.weight, torch.eye(head.linear.weight.shape[0]))

    # the same finished run, picked on dev: it resumes at its last checkpoint and only the pick differs
    import typer
    from typer.testing import CliRunner

    from rankwise.cli.train_retriever import register

    group = typer.Typer()
    register(group)
    group.command("other")(lambda: None)
    shown = CliRunner().invoke(group, ["retriever", "--config", str(tmp_path / "c.yaml"), "--set", "wise_ft=auto"])
    assert shown.exit_code == 0, shown.output
    auto = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert f"WiSE-FT alpha {auto['wise_ft']['alpha']} (smallest alpha" in shown.output
    assert "dev nDCG@10 by alpha: 0.0 " in shown.output
    assert auto["wise_ft"]["dev_ndcg@10"] == curve
    assert auto["wise_ft"]["alpha"] == pick_alpha({float(a): v for a, v in curve.items()}, 0.005)
    assert auto["after"]["dev_ndcg@10"] == pytest.approx(curve[str(auto["wise_ft"]["alpha"])], abs=1e-4)
