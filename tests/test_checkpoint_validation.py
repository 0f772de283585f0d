"""Checkpoints from strangers (issue 15): config values are checked at load, links may not leave the folder."""

from __future__ import annotations

import json
import time

import pytest
import torch

from mardini import MarDini, get_preset
from mardini.checkpoint import CONFIG_FILE, CheckpointError, export_checkpoint, load_model, save_checkpoint, \
    save_model, untrained_codec


@pytest.fixture()
def folder(tmp_path):
    torch.manual_seed(0)
    model = MarDini(get_preset("mardini-tiny"))
    save_checkpoint(model, untrained_codec(model.config), tmp_path / "ck")
    return tmp_path / "ck"


def _edit(folder, change):
    meta = json.loads((folder / CONFIG_FILE).read_text())
    change(meta["config"])
    (folder / CONFIG_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("section,key,value,message", [
    ("planner", "depth", 10**6, "planner.depth must be between 1 and 256"),
    (None, "num_frames", 10**9, "num_frames must be between 2 and 1024"),
    ("diffusion", "num_train_timesteps", 10**10, "num_train_timesteps must be between"),
    ("generator", "dim", "64", "generator.dim must be int, got '64'"),
    ("planner", "heads", 0, "planner.heads must be between 1"),
    ("generator", "heads", 3, "not divisible"),
    ("generator", "attention", "global", "generator.attention must be one of"),
    (None, "low_res_factor", float("nan"), "low_res_factor must be float"),
    ("planner", "identity_attention", 1, "planner.identity_attention must be bool"),
])
def test_config_values_are_checked_at_load(folder, section, key, value, message):
    _edit(folder, lambda c: (c[section] if section else c).__setitem__(key, value))
    started = time.time()
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)
    assert time.time() - started < 5


def test_deeply_nested_config_is_a_checkpoint_error(folder):
    (folder / CONFIG_FILE).write_text('{"format": "mardini", "format_version": 1, "config": ' + "[" * 100000
                                      + "]" * 100000 + "}")
    with pytest.raises(CheckpointError, match="nested too deeply|invalid model config"):
        load_model(folder)


def test_weights_of_another_shape_are_a_checkpoint_error(folder):
    other = MarDini(get_preset("mardini-tiny"))
    other.config.planner.mlp_dim = 64
    save_model(MarDini(other.config), folder)
    _edit(folder, lambda c: c["planner"].__setitem__("mlp_dim", 128))
    with pytest.raises(CheckpointError, match="tensor shapes differ"):
        load_model(folder)


def test_links_that_leave_the_checkpoint_are_refused(folder, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (folder / "codec" / "notes.txt").symlink_to(secret)
    with pytest.raises(CheckpointError, match="link to .*outside the checkpoint"):
        load_model(folder)
    with pytest.raises(CheckpointError, match="outside the checkpoint"):
        export_checkpoint(folder, tmp_path / "export")
    assert not (tmp_path / "export").exists()
    # A link inside the folder is harmless.
    (folder / "codec" / "notes.txt").unlink()
    (folder / "codec" / "notes.txt").symlink_to(folder / "config.json")
    assert load_model(folder).config.name == "mardini-tiny"


def test_training_refuses_a_codec_folder_with_an_outside_link(folder, tmp_path):
    from mardini.training.state import resolve_codec_dir

    (folder / "codec" / "extra.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(CheckpointError, match="outside the checkpoint"):
        resolve_codec_dir(folder / "codec")
