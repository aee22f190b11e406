"""An experiment killed while encoding its dense index resumes from the finished shards (issue 23): the shards are
kept beside the cached index until it is saved, then removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.config.experiment import load_config
from rankwise.data import read_run
from rankwise.engine import LocalEngine
from rankwise.experiment import run_experiment
from rankwise.retrieve.encode import build_random_encoder


class Killed(BaseException):
    """What a Ctrl-C or an OOM kill does to the process mid-encoding."""


def quiet(*_: object) -> None:
    return None


def test_a_killed_dense_index_resumes_from_its_finished_shards(
    tmp_path: Path, cranfield_dir: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    torch.set_num_threads(1)
    encoder = build_random_encoder(tmp_path / "encoder", minilm_path, hidden_size=32)
    config = tmp_path / "dense.yaml"
    config.write_text(
        "name: dense\ndata: {max_queries: 20}\nevaluate: {metrics: [nDCG@10]}\n"
        f"retrieve:\n  dense: {{kind: dense, model: '{encoder}', k: 10, shard_size: 400, batch_size: 64}}\n"
    )
    [reference] = run_experiment(
        load_config(config), [str(cranfield_dir)], tmp_path / "a", show_progress=False, log=quiet
    )

    original, encoded = LocalEngine.map, []

    def map_then_die(self, recipe, shards, progress=None, keep=False):
        for shard, result in original(self, recipe, shards, progress, keep):
            if len(encoded) == 2:
                raise Killed  # killed while the third of four shards (1,400 abstracts in 400s) is encoded
            encoded.append(shard.index)
            yield shard, result

    monkeypatch.setattr(LocalEngine, "map", map_then_die)
    with pytest.raises(Killed):
        run_experiment(load_config(config), [str(cranfield_dir)], tmp_path / "b", show_progress=False, log=quiet)
    [shards] = (tmp_path / "b" / ".indexes").glob("dense-*.shards")
    assert encoded == [0, 1]

    encoded.clear()
    monkeypatch.setattr(
        LocalEngine,
        "map",
        lambda self, *a, **k: (encoded.append(s.index) or (s, r) for s, r in original(self, *a, **k)),
    )
    [out] = run_experiment(load_config(config), [str(cranfield_dir)], tmp_path / "b", show_progress=False, log=quiet)
    assert encoded == [2, 3]  # only the shards the kill left
    assert read_run(out / "runs" / "dense.trec") == read_run(reference / "runs" / "dense.trec")
    assert not shards.exists()  # the index is saved: its shards are gone
