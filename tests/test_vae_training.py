"""Tests of `mardini train-vae` (mardini.training.vae): a short run, exact resume, decoder-only
fine-tuning and the config errors. Tiny sizes on photo clips so each run takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mardini.codecs import load_codec
from mardini.training.state import list_checkpoints
from mardini.training.vae import VaeTrainConfig, load_vae_config, train_vae


def tiny_config(**changes) -> VaeTrainConfig:
    base = dict(data={"kind": "photos", "source": "skimage"}, size=32, width=8, depth=1, pool_clips=6,
                frames_per_clip=1, batch_size=2, steps=4, warmup_steps=1, checkpoint_every=2, log_every=1,
                stats_frames=4, precision="fp32")
    base.update(changes)
    return VaeTrainConfig(**base)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_train_vae_writes_loadable_codec_with_latent_statistics(tmp_path):
    last = train_vae(tiny_config(), tmp_path, progress=False)
    assert last.name == "step-0000004"
    codec = load_codec(last)
    assert codec.latent_channels == 16
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 16, 4, 4) and codec.decode(z).shape == x.shape
    assert codec.scale > 0 and codec.scale != 1.0  # measured, not left at the default
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4] and all(r["l1"] > 0 for r in lines)


def test_train_vae_resume_matches_an_uninterrupted_run(tmp_path):
    full = train_vae(tiny_config(), tmp_path / "full", progress=False)
    train_vae(tiny_config(), tmp_path / "split", max_steps=2, progress=False)
    resumed = train_vae(tiny_config(), tmp_path / "split", resume=True, progress=False)
    assert train_vae(tiny_config(), tmp_path / "split", resume=True, progress=False) == resumed  # finished: no-op
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_decoder_only_keeps_encoder_and_latent_space(tmp_path):
    first = train_vae(tiny_config(), tmp_path / "vae", progress=False)
    tuned = train_vae(tiny_config(init=str(tmp_path / "vae"), decoder_only=True, lr=1e-2),
                      tmp_path / "decoder", progress=False)
    before, after = weights(first), weights(tuned)
    for key in before:
        if key.startswith(("encoder.", "patch_in.")):
            assert torch.equal(before[key], after[key]), f"{key} changed in a decoder-only run"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(("decoder.", "patch_out.")))
    old, new = load_codec(first), load_codec(tuned)
    assert (old.scale, old.shift) == (new.scale, new.shift)


def test_a_codecs_detail_gain_is_kept_and_never_trained_through(tmp_path):
    first = train_vae(tiny_config(), tmp_path / "vae", progress=False)
    meta = json.loads((first / "config.json").read_text())
    (first / "config.json").write_text(json.dumps({**meta, "format_version": 3, "detail_gain": 5.0,
                                                   "detail_threshold": 1e-4}))
    # Two identical decoder-only runs, one from the codec with a (large) gain, one without: the
    # gain is a decode-time setting, so the training is the same to the bit and only the config differs.
    plain_init = tmp_path / "plain-init"
    plain_init.mkdir()
    (plain_init / "model.safetensors").write_bytes((first / "model.safetensors").read_bytes())
    (plain_init / "config.json").write_text(json.dumps(meta))
    cfg = dict(decoder_only=True, lr=1e-2)
    gained = train_vae(tiny_config(init=str(first), **cfg), tmp_path / "gained", progress=False)
    plain = train_vae(tiny_config(init=str(plain_init), **cfg), tmp_path / "plain", progress=False)
    a, b = weights(gained), weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((gained / "config.json").read_text())
    assert (saved["detail_gain"], saved["detail_threshold"]) == (5.0, 1e-4)
    assert "detail_gain" not in json.loads((plain / "config.json").read_text())


def test_decoder_only_needs_init_and_a_matching_model(tmp_path):
    (tmp_path / "vae.yaml").write_text("decoder_only: true\n")
    with pytest.raises(ValueError, match="needs `init:`"):
        load_vae_config(tmp_path / "vae.yaml")
    train_vae(tiny_config(steps=2), tmp_path / "vae", progress=False)
    with pytest.raises(ValueError, match="width/depth"):
        train_vae(tiny_config(init=str(tmp_path / "vae"), decoder_only=True, width=16), tmp_path / "x",
                  progress=False)
    with pytest.raises(ValueError, match="not a saved frame autoencoder"):
        train_vae(tiny_config(init=str(tmp_path / "missing"), decoder_only=True), tmp_path / "y", progress=False)


def test_decoder_only_adds_a_refinement_to_a_codec_without_one(tmp_path):
    from mardini.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
    from mardini.data.cache import codec_description
    from mardini import MarDini, get_preset

    first = train_vae(tiny_config(steps=2), tmp_path / "vae", progress=False)
    assert load_codec(first).model.refine is None
    cfg = tiny_config(init=str(tmp_path / "vae"), decoder_only=True, refine_width=4, lr=1e-2, steps=3,
                      adversarial_weight=0.5, disc_width=8, disc_layers=2)
    tuned = train_vae(cfg, tmp_path / "refine", progress=False)
    before, after = weights(first), weights(tuned)
    new_keys = sorted(set(after) - set(before))
    assert set(before) <= set(after) and new_keys and all(k.startswith("refine.") for k in new_keys)
    for key in before:
        if key.startswith(("encoder.", "patch_in.")):
            assert torch.equal(before[key], after[key]), f"{key} changed in a decoder-only run"
    assert after["refine.out.weight"].abs().sum() > 0  # trained away from its zero start
    old, new = load_codec(first), load_codec(tuned)
    assert new.model.config.refine_width == 4
    assert (old.scale, old.shift) == (new.scale, new.shift) and codec_description(old) == codec_description(new)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = old.encode(x)
    assert torch.equal(new.encode(x), z) and not torch.equal(new.decode(z), old.decode(z))
    # Resuming the refined run continues it exactly.
    train_vae(cfg, tmp_path / "split", max_steps=2, progress=False)
    resumed = weights(train_vae(cfg, tmp_path / "split", resume=True, progress=False))
    for key in after:
        torch.testing.assert_close(after[key], resumed[key], rtol=1e-5, atol=1e-6, msg=key)
    # `mardini export --codec` takes it for a model trained on the first codec's latents.
    torch.manual_seed(0)
    save_checkpoint(MarDini(get_preset("mardini-tiny")).eval(), old, tmp_path / "ck")
    export_checkpoint(tmp_path / "ck", tmp_path / "out", dtype=torch.float32, codec=tuned)
    exported = load_checkpoint(tmp_path / "out")[1]
    assert exported.model.config.refine_width == 4 and torch.equal(exported.decode(z), new.decode(z))


def test_refine_width_must_grow_from_zero_and_be_valid(tmp_path):
    train_vae(tiny_config(steps=2, refine_width=4), tmp_path / "vae", progress=False)
    for width in (0, 8):
        with pytest.raises(ValueError, match=f"has refine_width 4 but the config asks for {width}"):
            train_vae(tiny_config(init=str(tmp_path / "vae"), decoder_only=True, refine_width=width),
                      tmp_path / f"x{width}", progress=False)
    for value in ("-1", "true", "1.5"):
        (tmp_path / "vae.yaml").write_text(f"refine_width: {value}\n")
        with pytest.raises(ValueError, match="refine_width must be a non-negative integer"):
            load_vae_config(tmp_path / "vae.yaml")
    with pytest.raises(ValueError, match="refine_width must be a non-negative integer"):
        train_vae(tiny_config(refine_width=-2), tmp_path / "y", progress=False)


def test_relative_init_resolves_against_the_config_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "ft.yaml").write_text("init: ../runs/vae\ndecoder_only: true\n")
    cfg = load_vae_config(tmp_path / "configs" / "ft.yaml")
    assert Path(cfg.init) == (tmp_path / "runs" / "vae").resolve()
    assert list_checkpoints(tmp_path / "runs" / "vae") == []


def test_adversarial_training_saves_the_discriminator_and_resumes_exactly(tmp_path):
    cfg = dict(adversarial_weight=0.5, adversarial_start=1, gradient_weight=0.5, spectrum_weight=0.5,
               spectrum_weighting="laplacian", detail_weight=0.3, disc_width=8,
               disc_layers=2)
    full = train_vae(tiny_config(**cfg), tmp_path / "full", progress=False)
    train_vae(tiny_config(**cfg), tmp_path / "split", max_steps=2, progress=False)
    resumed = train_vae(tiny_config(**cfg), tmp_path / "split", resume=True, progress=False)
    assert (full / "training" / "discriminator.safetensors").is_file()
    assert not (full / "discriminator.safetensors").exists()  # training state, not part of the codec
    for name in ("model.safetensors", "training/discriminator.safetensors"):
        a, b = load_file(str(full / name)), load_file(str(resumed / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{name}:{key}")
    lines = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert "d_loss" not in lines[0]  # step 1 is before adversarial_start
    assert all("d_loss" in r and r["adv_balance"] >= 0 for r in lines[1:])
    # The discriminator learnt something: its weights moved from their initialisation.
    torch.manual_seed(0)
    plain = train_vae(tiny_config(gradient_weight=0.5), tmp_path / "plain", progress=False)
    assert not (plain / "training" / "discriminator.safetensors").exists()
    assert not torch.equal(weights(plain)["decoder.0.weight"], weights(full)["decoder.0.weight"])


def test_a_run_from_an_adversarial_checkpoint_keeps_its_discriminator(tmp_path):
    cfg = dict(adversarial_weight=0.5, adversarial_start=1, disc_width=8, disc_layers=2)
    first = train_vae(tiny_config(**cfg), tmp_path / "first", progress=False)
    # Decoder-only from that run, the discriminator not trained yet (adversarial_start not reached):
    # the saved discriminator is the init's, not a fresh one.
    tuned = train_vae(tiny_config(init=str(tmp_path / "first"), decoder_only=True, steps=2,
                                  **{**cfg, "adversarial_start": 5}), tmp_path / "tuned", progress=False)
    a = load_file(str(first / "training" / "discriminator.safetensors"))
    b = load_file(str(tuned / "training" / "discriminator.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="disc_width=16"):
        train_vae(tiny_config(init=str(tmp_path / "first"), decoder_only=True, **{**cfg, "disc_width": 16}),
                  tmp_path / "wide", progress=False)


def test_train_vae_rejects_negative_loss_weights(tmp_path):
    (tmp_path / "vae.yaml").write_text("adversarial_weight: -1\n")
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0"):
        load_vae_config(tmp_path / "vae.yaml")
    (tmp_path / "vae.yaml").write_text("spectrum_weight: 1\nsize: 40\n")
    with pytest.raises(ValueError, match="multiple of 16"):
        load_vae_config(tmp_path / "vae.yaml")
    (tmp_path / "vae.yaml").write_text("detail_weight: 1\nsize: 40\n")
    with pytest.raises(ValueError, match="detail_weight compares 16-px tiles"):
        load_vae_config(tmp_path / "vae.yaml")
    (tmp_path / "vae.yaml").write_text("detail_weight: -0.1\n")
    with pytest.raises(ValueError, match="detail_weight must be >= 0"):
        load_vae_config(tmp_path / "vae.yaml")
    (tmp_path / "vae.yaml").write_text("spectrum_weight: 1\nspectrum_weighting: focal\n")
    with pytest.raises(ValueError, match="spectrum_weighting must be one of"):
        load_vae_config(tmp_path / "vae.yaml")
