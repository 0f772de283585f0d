"""Presets, parameter counts (acceptance 1 of the core issue) and config round trips."""

from __future__ import annotations

import pytest

from mardini import MarDini, MarDiniConfig, get_preset
from mardini.cli import main

# Table 5 of the paper: planner 1.3B (S) or 3.1B (L), generator 288M.
PAPER_COUNTS = {
    "mardini-s-st": (1.3e9, 288e6, "spatiotemporal", 9),
    "mardini-l-st": (3.1e9, 288e6, "spatiotemporal", 9),
    "mardini-s-t": (1.3e9, 288e6, "temporal", 17),
    "mardini-l-t": (3.1e9, 288e6, "temporal", 17),
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_presets_match_table5_within_10_percent(name):
    planner_target, generator_target, attention, frames = PAPER_COUNTS[name]
    model = MarDini.from_preset(name, device="meta")
    counts = model.num_parameters()
    assert abs(counts["planner"] / planner_target - 1) < 0.10, counts
    assert abs(counts["generator"] / generator_target - 1) < 0.10, counts
    assert model.config.generator.attention == attention
    assert model.config.num_frames == frames
    assert next(model.parameters()).device.type == "meta"


def test_presets_command_prints_one_row_per_preset(capsys):
    from mardini.config import PRESETS

    assert main(["presets"]) == 0
    table, _, bundled = capsys.readouterr().out.strip().partition("\n\n")
    lines = table.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(PRESETS)
    # The bundled model is named for what it is, which its preset row does not say (the output conv).
    assert bundled.startswith("bundled model")
    assert "mardini-cpu; generator attention spatiotemporal, output conv 64" in bundled
    planner, generator = int(rows["mardini-l-t"][1]), int(rows["mardini-l-t"][2])
    assert planner == MarDini.from_preset("mardini-l-t", device="meta").num_parameters()["planner"]
    assert generator > 250_000_000
    assert rows["mardini-s-t"][3] == "temporal" and rows["mardini-s-st"][3] == "spatiotemporal"
    assert rows["mardini-s-t"][4:] == ["512x512", "256x256", "17"]


def test_config_round_trip_and_unknown_fields():
    cfg = get_preset("mardini-cpu")
    assert MarDiniConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown field.*'planner'"):
        MarDiniConfig.from_dict({"planner": {"widht": 3}})
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("mardini-xl")


def test_get_preset_returns_a_copy():
    cfg = get_preset("mardini-tiny")
    cfg.generator.attention = "temporal"
    assert get_preset("mardini-tiny").generator.attention == "spatiotemporal"


def test_low_resolution_is_patchable():
    cfg = get_preset("mardini-cpu")
    assert cfg.low_resolution() == (64, 64)
    h, w = cfg.low_resolution(96, 160)
    unit = cfg.vae_downsample * cfg.planner.patch_size
    assert h % unit == 0 and w % unit == 0 and (h, w) == (48, 80)
