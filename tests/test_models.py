"""Planner and generator behaviour: identity attention end to end, shapes, attention patterns."""

from __future__ import annotations

import pytest
import torch

from conftest import wake_zero_init
from mardini import MarDini, get_preset


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny")).eval()
    wake_zero_init(m.generator)
    return m


def _inputs(batch=2, frames=5, high=(8, 8), low=(4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    zh = torch.randn(batch, frames, 16, *high, generator=g)
    zl = torch.randn(batch, frames, 16, *low, generator=g)
    gen = torch.zeros(batch, frames, dtype=torch.bool)
    gen[0, 1:-1] = True  # interpolation
    if batch > 1:        # image-to-video, reference in the middle
        gen[1] = True
        gen[1, frames // 2] = False
    return zh, zl, gen


def test_planner_reference_outputs_ignore_masked_frames_and_other_references(model):
    _, zl, gen = _inputs()
    plan = model.planner(zl, gen)
    # Changing the learnable [MASK] token changes every masked frame's input ...
    with torch.no_grad():
        saved = model.planner.mask_token.clone()
        model.planner.mask_token.add_(1.0)
        plan_mask = model.planner(zl, gen)
        model.planner.mask_token.copy_(saved)
    ref, masked = ~gen, gen
    assert torch.equal(plan_mask[ref], plan[ref])
    assert not torch.allclose(plan_mask[masked], plan[masked])
    # ... and a reference frame's signal does not depend on the other reference frame either.
    zl2 = zl.clone()
    zl2[0, -1] += torch.randn_like(zl2[0, -1])
    plan2 = model.planner(zl2, gen)
    assert torch.equal(plan2[0, 0], plan[0, 0])
    assert not torch.allclose(plan2[0, 2], plan[0, 2])


@pytest.mark.parametrize("attention", ["spatiotemporal", "temporal"])
def test_generator_reference_outputs_ignore_noisy_tokens(model, attention):
    zh, zl, gen = _inputs()
    plan = model.planner(zl, gen)
    t = torch.tensor([700, 300])
    out = model.generator(zh, t, gen, plan, attention=attention)
    zh2 = zh.clone()
    zh2[gen] += 3 * torch.randn_like(zh2[gen])  # perturb every noisy token
    out2 = model.generator(zh2, t + 111, gen, plan, attention=attention)  # and the noise level
    assert torch.equal(out2[~gen], out[~gen])
    assert not torch.allclose(out2[gen], out[gen])


def test_generator_attention_patterns_differ_but_share_weights(model):
    zh, zl, gen = _inputs()
    plan = model.planner(zl, gen)
    t = torch.tensor([500, 500])
    st = model.generator(zh, t, gen, plan, attention="spatiotemporal")
    tm = model.generator(zh, t, gen, plan, attention="temporal")
    assert st.shape == tm.shape and torch.isfinite(tm).all()
    assert not torch.allclose(st[gen], tm[gen])
    with pytest.raises(ValueError, match="unknown attention pattern"):
        model.generator(zh, t, gen, plan, attention="causal")


@pytest.mark.parametrize("frames", [3, 7])
def test_non_square_frames_and_odd_frame_counts(model, frames):
    zh, zl, _ = _inputs(batch=1, frames=frames, high=(6, 10), low=(4, 6))
    gen = torch.ones(1, frames, dtype=torch.bool)
    gen[0, frames // 2] = False
    plan = model.planner(zl, gen)
    # rows * (cols + 1) tokens per frame: 2 rows of 3 patches, each followed by [NEXT].
    assert plan.shape == (1, frames, 2 * 4, 64)
    assert model.planner.reconstruct(plan, 4, 6).shape == (1, frames, 16, 4, 6)
    for attention in ("spatiotemporal", "temporal"):
        v = model.generator(zh, torch.tensor([999]), gen, plan, attention=attention)
        assert v.shape == zh.shape and torch.isfinite(v).all()


def test_untrained_generator_predicts_zero_and_uncond_token_is_used():
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny"))
    zh, zl, gen = _inputs()
    v = m.generator(zh, torch.tensor([10, 900]), gen, None)
    assert torch.equal(v, torch.zeros_like(v))  # adaLN-Zero
    plan = m.planner(zl, gen)
    projected = m.generator.project_plan(plan, 2, 5, drop=torch.tensor([True, False]))
    assert torch.equal(projected[0], m.generator.uncond_token.expand_as(projected[0]))
    assert not torch.equal(projected[1], m.generator.uncond_token.expand_as(projected[1]))


def test_bad_shapes_give_clear_errors(model):
    zh, zl, gen = _inputs()
    with pytest.raises(ValueError, match="latent channels"):
        model.planner(zl[:, :, :8], gen)
    with pytest.raises(ValueError, match="frame mask"):
        model.generator(zh, torch.tensor([1, 1]), gen[:, :3], None)
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        model.generator(zh[..., :7], torch.tensor([1, 1]), gen, None)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny")).train()
    wake_zero_init(m.generator)
    zh, zl, gen = _inputs()

    def grads():
        m.zero_grad()
        plan = m.planner(zl, gen)
        m.generator(zh, torch.tensor([100, 800]), gen, plan).square().mean().backward()
        return [p.grad.clone() for p in m.parameters() if p.grad is not None]

    plain = grads()
    m.set_gradient_checkpointing(True)
    checkpointed = grads()
    assert len(plain) == len(checkpointed) > 0
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


def test_bf16_autocast_forward_runs():
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny"))
    zh, zl, gen = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = m.generator(zh, torch.tensor([5, 500]), gen, m.planner(zl, gen))
    assert v.shape == zh.shape and torch.isfinite(v.float()).all()


def test_identity_attention_can_be_switched_off_for_ablations():
    torch.manual_seed(0)
    cfg = get_preset("mardini-tiny")
    cfg.planner.identity_attention = cfg.generator.identity_attention = False
    m = MarDini(cfg).eval()
    wake_zero_init(m.generator)
    zh, zl, gen = _inputs()
    plan = m.planner(zl, gen)
    zl2 = zl.clone()
    zl2[0, -1] += 1.0
    # Without identity attention a reference frame's signal now depends on the other reference.
    assert not torch.allclose(m.planner(zl2, gen)[0, 0], plan[0, 0])
    zh2 = zh.clone()
    zh2[gen] += 1.0
    t = torch.tensor([500, 500])
    assert not torch.allclose(m.generator(zh2, t, gen, plan)[~gen], m.generator(zh, t, gen, plan)[~gen])


def test_output_conv_starts_as_the_identity_and_lets_patches_see_their_neighbours(model):
    """U-ViT's conv after the last linear layer (GeneratorConfig.output_conv): zero-initialised, so a
    generator that grows one predicts exactly what it did; once trained, a latent pixel's velocity
    depends on the next token's prediction, which the per-token linear layer never allows."""
    zh, zl, gen = _inputs()
    plan = model.planner(zl, gen)
    grown = MarDini(get_preset("mardini-tiny")).eval()
    grown.load_state_dict(model.state_dict())
    before = grown.generator(zh, torch.tensor([500, 500]), gen, plan)
    grown.generator.add_output_conv(8)
    assert grown.config.generator.output_conv == 8
    assert torch.equal(grown.generator(zh, torch.tensor([500, 500]), gen, plan), before)
    with pytest.raises(ValueError, match="already has"):
        grown.generator.add_output_conv(8)
    # The conv's last layer gets a gradient at zero (its input is the linear prediction).
    grown.generator(zh, torch.tensor([500, 500]), gen, plan).square().sum().backward()
    assert grown.generator.output_conv[-1].weight.grad.abs().sum() > 0
    # Trained (here: random), it mixes neighbouring patches: with patch size 2, pixel column 1 is the
    # right edge of the first token and column 2 the left edge of the next, which the per-token
    # linear layer computes apart.
    torch.nn.init.normal_(grown.generator.output_conv[-1].weight, std=0.1)
    conv = grown.generator.output_conv
    with torch.no_grad():
        latents = torch.randn(1, 16, 8, 8)
        changed = latents.clone()
        changed[..., 0:2, 2:4] += 1.0  # the second token of the first row
        edge = (conv(changed) - conv(latents))[..., 0, 1]
    assert edge.abs().max() > 0
    # Built from a config, the conv is there (a checkpoint with one loads into the same shape).
    config = get_preset("mardini-tiny")
    config.generator.output_conv = 8
    assert MarDini(config).generator.output_conv is not None
    assert set(MarDini(config).state_dict()) == set(grown.state_dict())
