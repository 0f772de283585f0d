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


def test_export_halves_the_weights_and_keeps_the_outputs(tmp_path, capsys):
    from safetensors.torch import load_file

    from mardini.checkpoint import load_checkpoint, save_checkpoint, untrained_codec
    from mardini.cli import main

    m = _trained_looking_model()
    torch.manual_seed(1)
    save_checkpoint(m, untrained_codec(m.config), tmp_path / "ck")
    (tmp_path / "ck" / "training").mkdir()  # training state must not travel into the export
    assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "half")]) == 0
    assert not (tmp_path / "half" / "training").exists()
    stored = load_file(str(tmp_path / "half" / WEIGHTS_FILE))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    assert {t.dtype for t in load_file(str(tmp_path / "half" / "codec" / "model.safetensors")).values()} == {torch.float16}
    assert json.loads((tmp_path / "half" / CONFIG_FILE).read_text())["weights_dtype"] == "float16"
    half, codec = load_checkpoint(tmp_path / "half")
    assert next(half.parameters()).dtype == torch.float32 and next(codec.parameters()).dtype == torch.float32
    torch.testing.assert_close(_run(half), _run(m), rtol=0, atol=5e-3)
    # an existing output is kept unless --force
    assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "half")]) == 2
    assert "--force" in capsys.readouterr().err
    # Sampling defaults can be set at export, and only they.
    assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "set"),
                 "--set", "diffusion.inbetween_steps=1", "--set", "diffusion.sampling_steps=10",
                 "--set", "diffusion.grid_shift=alternate", "--set", "diffusion.skip_guidance=0.2",
                 "--set", "diffusion.skip_guidance_block=0"]) == 0
    diffusion = load_checkpoint(tmp_path / "set")[0].config.diffusion
    assert (diffusion.inbetween_steps, diffusion.sampling_steps, diffusion.grid_shift) == (1, 10, "alternate")
    assert (diffusion.skip_guidance, diffusion.skip_guidance_block) == (0.2, 0)
    depth = m.config.generator.depth
    for bad, message in (("generator.depth=2", "can set only"), ("diffusion.inbetween_steps=0", "positive"),
                         ("diffusion.grid_shift=diagonal", "unknown grid_shift"),
                         ("diffusion.skip_guidance=-0.1", "skip_guidance must be a finite number >= 0"),
                         (f"diffusion.skip_guidance_block={depth}", f"is not a block of the {depth}-block generator"),
                         ("diffusion.inbetween_steps", "KEY=VALUE")):
        assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "bad"),
                     "--set", bad]) == 2
        assert message in capsys.readouterr().err, bad
    assert not (tmp_path / "bad").exists()


def test_export_swaps_only_a_codec_with_the_same_latent_space(tmp_path):
    from mardini.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint, untrained_codec

    m = _trained_looking_model()
    torch.manual_seed(1)
    codec = untrained_codec(m.config)
    save_checkpoint(m, codec, tmp_path / "ck")
    tuned = untrained_codec(m.config)  # same scale/shift as `codec`: stands in for a decoder-only fine-tune
    tuned.model.decoder.load_state_dict(codec.model.decoder.state_dict())
    with torch.no_grad():
        tuned.model.patch_out.weight.mul_(0.5)
    tuned.save_pretrained(tmp_path / "tuned")
    export_checkpoint(tmp_path / "ck", tmp_path / "out", dtype=torch.float32, codec=tmp_path / "tuned")
    _, loaded = load_checkpoint(tmp_path / "out")
    assert torch.equal(loaded.model.patch_out.weight, tuned.model.patch_out.weight)
    other = untrained_codec(m.config)
    other.scale = 0.5
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match="different latent space"):
        export_checkpoint(tmp_path / "ck", tmp_path / "bad", codec=tmp_path / "other")
    assert not (tmp_path / "bad").exists()


def test_export_sets_the_codecs_detail_gain_and_nothing_else(tmp_path, capsys):
    from safetensors import safe_open

    from mardini.checkpoint import load_checkpoint, save_checkpoint, untrained_codec
    from mardini.cli import main
    from mardini.codecs.frame_autoencoder import restore_detail

    m = _trained_looking_model()
    torch.manual_seed(1)
    save_checkpoint(m, untrained_codec(m.config), tmp_path / "ck")
    ck = str(tmp_path / "ck")
    assert main(["export", "--checkpoint", ck, "--out", str(tmp_path / "plain"), "--dtype", "float32"]) == 0
    assert main(["export", "--checkpoint", ck, "--out", str(tmp_path / "sharp"), "--dtype", "float32",
                 "--detail-gain", "0.7"]) == 0
    meta = json.loads((tmp_path / "sharp" / "codec" / "config.json").read_text())
    assert (meta["format_version"], meta["detail_gain"], meta["detail_threshold"]) == (3, 0.7, 0.01)
    with safe_open(str(tmp_path / "sharp" / "codec" / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["format_version"] == "3"
    (_, plain), (_, sharp) = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "sharp")
    z = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    assert (plain.scale, plain.shift) == (sharp.scale, sharp.shift)  # the same latent space
    raw = plain.model.decode(z / plain.scale + plain.shift).detach()
    torch.testing.assert_close(sharp.decode(z), restore_detail(raw, 0.7, 0.01).clamp(-1, 1))
    assert main(["export", "--checkpoint", str(tmp_path / "sharp"), "--out", str(tmp_path / "off"),
                 "--detail-gain", "0", "--detail-threshold", "0.02"]) == 0  # 0 turns it off: the old format
    assert json.loads((tmp_path / "off" / "codec" / "config.json").read_text())["format_version"] == 1
    for args, message in ((["--detail-gain", "-1"], "detail_gain must be a finite number above 0"),
                          (["--detail-gain", "1", "--detail-threshold", "0"], "detail_threshold must be"),
                          (["--detail-threshold", "0.02"], "give --detail-gain too")):
        assert main(["export", "--checkpoint", ck, "--out", str(tmp_path / "bad"), *args]) == 2
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "bad").exists()


def test_export_refuses_a_detail_gain_for_another_codec_kind(tmp_path):
    from diffusers import AutoencoderKL

    from mardini.checkpoint import export_checkpoint
    from mardini.codecs import load_codec

    torch.manual_seed(0)
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=16,
                  norm_num_groups=4).save_pretrained(tmp_path / "kl")
    import shutil

    from mardini.checkpoint import save_model

    shutil.copytree(tmp_path / "kl", tmp_path / "ck" / "codec")  # as save_checkpoint asks for this kind
    save_model(_trained_looking_model(), tmp_path / "ck")
    assert type(load_codec(tmp_path / "ck" / "codec")).__name__ == "AutoencoderKLCodec"
    with pytest.raises(CheckpointError, match="setting of the project's frame autoencoder"):
        export_checkpoint(tmp_path / "ck", tmp_path / "out", detail=(1.0, 0.01))
    assert not (tmp_path / "out").exists()
    export_checkpoint(tmp_path / "ck", tmp_path / "out")  # without a gain it exports as before
