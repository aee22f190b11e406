"""Experiment configs: typed sections, YAML + overrides, errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.config.experiment import (
    BM25Config,
    ConfigError,
    CrossEncoderConfig,
    DenseConfig,
    ExperimentConfig,
    apply_overrides,
    dump_config,
    load_config,
    parse_override,
)
from rankwise.config.yaml_config import read_mapping
from rankwise.config.yaml_keys import merge

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

GOOD = """\
name: demo
datasets: [cranfield]
retrieve:
  bm25: {k: 50}
  dense:
    kind: dense
    model: minilm
fuse: {method: rrf, k: 60}
rerank: {kind: cross-encoder, model: some/model, top_n: 20}
evaluate:
  metrics: [nDCG@10, R@100]
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_fills_defaults_and_kinds(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert isinstance(config.retrieve["bm25"], BM25Config)  # kind defaults to the retriever's name
    assert config.retrieve["bm25"].k == 50 and config.retrieve["bm25"].k1 == 1.5
    assert isinstance(config.retrieve["dense"], DenseConfig)
    assert isinstance(config.rerank, CrossEncoderConfig) and config.rerank.top_n == 20
    assert config.data.split == "test" and config.tracking.backend == "none"
    assert config.ranking_stages() == ["bm25", "dense", "fuse", "rerank"]


def test_dump_round_trips(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    again = load_config(write(tmp_path, dump_config(config), "resolved.yaml"))
    assert again == config
    assert dump_config(again) == dump_config(config)


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = write(tmp_path, GOOD.replace("    model: minilm\n", "    model: minilm\n    modle: typo\n"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}, line 8: retrieve.dense.modle: unknown key"


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, GOOD + "retreive: {}\n")
    with pytest.raises(ConfigError, match=r"line 12: retreive: unknown key"):
        load_config(path)


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, GOOD.replace("top_n: 20", "top_n: lots"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 9: rerank.top_n: ")
    assert "integer" in message and "'lots'" in message


def test_several_errors_are_all_listed(tmp_path):
    path = write(tmp_path, GOOD.replace("k: 50", "k: -1").replace("method: rrf", "method: borda"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "retrieve.bm25.k: Input should be greater than 0" in message
    assert "fuse.method:" in message and "'borda'" in message


def test_unknown_kind_lists_the_known_ones(tmp_path):
    path = write(tmp_path, GOOD.replace("kind: cross-encoder", "kind: colbert"))
    with pytest.raises(ConfigError, match=r"rerank: .*'colbert'.*'cross-encoder', 'llm', 'http'"):
        load_config(path)


def test_unknown_metric_is_an_error(tmp_path):
    path = write(tmp_path, GOOD.replace("R@100", "Recal@100"))
    with pytest.raises(ConfigError, match=r"line 11: evaluate.metrics: .*unknown metric 'Recal@100'"):
        load_config(path)


def test_consistency_rules(tmp_path):
    with pytest.raises(ConfigError, match="2 retrievers need a 'fuse' section"):
        load_config(write(tmp_path, GOOD.replace("fuse: {method: rrf, k: 60}\n", "")))
    with pytest.raises(ConfigError, match=r"fuse.weights names unknown retrievers \['splade'\]"):
        load_config(write(tmp_path, GOOD.replace("k: 60}", "k: 60, weights: {splade: 2}}")))
    with pytest.raises(ConfigError, match="reserved"):
        load_config(write(tmp_path, "name: x\nretrieve:\n  rerank: {kind: bm25}\n"))
    with pytest.raises(ConfigError, match="name: "):
        load_config(write(tmp_path, GOOD.replace("name: demo", "name: ../escape")))


def test_overrides_are_typed_yaml_values(tmp_path):
    config = load_config(
        write(tmp_path, GOOD),
        ["rerank.top_n=5", "retrieve.bm25.k1=0.9", "evaluate.metrics=[AP, P@5]", "fuse.weights={bm25: 2.0}"],
    )
    assert config.rerank is not None and config.rerank.top_n == 5
    assert config.retrieve["bm25"].k1 == 0.9
    assert config.evaluate.metrics == ["AP", "P@5"]
    assert config.fuse is not None and config.fuse.weights == {"bm25": 2.0}
    removed = load_config(write(tmp_path, GOOD), ["rerank=null"])
    assert removed.rerank is None


def test_override_errors_point_at_the_override(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["rerank.topn=5"])
    assert str(info.value) == f"{path} (from --set rerank.topn=5): rerank.topn: unknown key"
    with pytest.raises(ConfigError, match=r"from --set rerank\.top_n=zero"):
        load_config(path, ["rerank.top_n=zero"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["rerank.top_n"])
    with pytest.raises(ConfigError, match="name is a str, not a section"):
        load_config(path, ["name.first=x"])


def test_parse_and_apply_overrides_do_not_mutate():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=") == (["a"], "")
    data = {"a": {"b": 1}}
    assert apply_overrides(data, ["a.c=true", "d.e=null"]) == {"a": {"b": 1, "c": True}, "d": {"e": None}}
    assert data == {"a": {"b": 1}}


def test_training_set_overrides_take_dotted_keys_and_merge_sections(tmp_path):
    from rankwise.config.yaml_keys import parse_overrides

    path = write(tmp_path, "max_steps: 10\nblend:\n  size: 800\n  seed: 0\n", "train.yaml")
    overrides = parse_overrides(["blend.size=100", "max_steps=2"])
    assert overrides == {"blend": {"size": 100}, "max_steps": 2}
    assert read_mapping(path, overrides)[2] == {"max_steps": 2, "blend": {"size": 100, "seed": 0}}
    assert merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["blend.size"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\nretrieve: {bm25: {}}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_reranker_training_settings_are_checked(tmp_path):
    base = GOOD.replace("top_n: 20}", "top_n: 20, train: {data: scifact, epochs: 1}}")
    config = load_config(write(tmp_path, base))
    assert isinstance(config.rerank, CrossEncoderConfig) and config.rerank.train == {"data": "scifact", "epochs": 1}
    with pytest.raises(ConfigError, match=r"rerank.train: .*train.epoks: unknown key"):
        load_config(write(tmp_path, base.replace("epochs", "epoks")))
    with pytest.raises(ConfigError, match="set by the experiment"):
        load_config(write(tmp_path, base.replace("epochs: 1", "output_dir: x")))


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.endswith(".expected.yaml")))
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    assert config.datasets, f"{path.name} should name its data sets so `rankwise run -e` needs no -d"
    assert path.with_name(f"{path.stem}.expected.yaml").is_file(), f"{path.name} has no expected.yaml"


TRAINING_CONFIGS = sorted((CONFIGS / "rankrag").glob("*.yaml")) + sorted((CONFIGS / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_training_configs_load(path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rankwise.config import rankrag_blend as rankrag_config
    from rankwise.config import rankrag_train as rankrag_train_config
    from rankwise.config import train_reranker as reranker_config
    from rankwise.config import train_retriever as retriever_config
    from rankwise.rankrag import sweep as rankrag_sweep

    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    loaders = {
        "blend": rankrag_config.load_blend_config,
        "sweep": rankrag_sweep.load_sweep_config,
        "train": rankrag_train_config.load_train_config,
        "reranker": reranker_config.load_config,
        "retriever": retriever_config.load_config,
    }
    [load] = [loader for prefix, loader in loaders.items() if path.stem.startswith(prefix)]
    assert load(path) is not None
