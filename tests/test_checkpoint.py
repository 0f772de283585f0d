"""Checkpoint format: safetensors + JSON, exact round trip, clear errors, both attention patterns."""

from __future__ import annotations

import json

import pytest
import torch

from mardini import MarDini, get_preset
from mardini.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, load_model, save_model


def _trained_looking_model():
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny"))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


def _run(m, attention=None):
    g = torch.Generator().manual_seed(0)
    zh, zl = torch.randn(1, 5, 16, 8, 8, generator=g), torch.randn(1, 5, 16, 4, 4, generator=g)
    gen = torch.tensor([[False, True, True, True, False]])
    with torch.no_grad():
        return m.generator(zh, torch.tensor([321]), gen, m.planner(zl, gen), attention=attention)


def test_save_then_load_reproduces_outputs_exactly(tmp_path):
    m = _trained_looking_model()
    save_model(m, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = load_model(tmp_path / "ck")
    assert loaded.config == m.config
    assert torch.equal(_run(loaded), _run(m))


def test_a_checkpoint_runs_in_both_attention_patterns(tmp_path):
    m = _trained_looking_model()
    save_model(m, tmp_path / "ck")
    # Switch the pattern in the stored config (what stage 2 of the recipe does) and load again.
    meta = json.loads((tmp_path / "ck" / CONFIG_FILE).read_text())
    meta["config"]["generator"]["attention"] = "temporal"
    (tmp_path / "ck" / CONFIG_FILE).write_text(json.dumps(meta))
    temporal = load_model(tmp_path / "ck")
    assert temporal.generator.attention == "temporal"
    out_t = _run(temporal)
    assert torch.equal(out_t, _run(m, attention="temporal"))
    assert torch.isfinite(out_t).all() and not torch.allclose(out_t, _run(m, attention="spatiotemporal"))


def test_checkpoint_without_reconstruction_head_loads(tmp_path):
    m = _trained_looking_model()
    m.planner.head = None
    m.config.planner.reconstruction_head = False
    save_model(m, tmp_path / "ck")
    assert load_model(tmp_path / "ck").planner.head is None


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing")
    folder = tmp_path / "ck"
    save_model(_trained_looking_model(), folder)
    (folder / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(folder)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_model(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    meta["format_version"] = 99
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(folder)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(folder)


def test_weights_that_do_not_match_the_config_are_rejected(tmp_path):
    save_model(_trained_looking_model(), tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / CONFIG_FILE).read_text())
    meta["config"]["generator"]["depth"] = 3
    (tmp_path / "ck" / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_model(tmp_path / "ck")


def test_cli_init_writes_a_loadable_checkpoint(tmp_path, capsys):
    from mardini.cli import main

    assert main(["init", "--preset", "mardini-tiny", "--out", str(tmp_path / "ck")]) == 0
    assert load_model(tmp_path / "ck").config.name == "mardini-tiny"
    assert main(["init", "--preset", "mardini-tiny", "--out", str(tmp_path / "ck")]) == 2
    assert "not empty" in capsys.readouterr().err
