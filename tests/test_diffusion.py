"""Noise schedule, masked losses (Eq. 1-3), guidance and the DDIM sampler."""

from __future__ import annotations

import pytest
import torch

from conftest import wake_zero_init
from mardini import MarDini, get_preset
from mardini.config import DiffusionConfig
from mardini.diffusion import (Prior, alpha_sigma, between_references, diffusion_prior, guided_denoiser, make_scheduler,
                               masked_diffusion_loss, masked_mse, masked_reconstruction_loss, reference_interpolation,
                               sample_ddim)


@pytest.fixture(scope="module")
def scheduler():
    return make_scheduler(DiffusionConfig())


def test_schedule_has_zero_terminal_snr(scheduler):
    alpha, sigma = alpha_sigma(scheduler, torch.tensor([0, 999]))
    assert alpha[1] == 0 and sigma[1] == 1  # the last step is pure noise
    assert alpha[0] > 0.99
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(2))


def test_velocity_target_is_alpha_eps_minus_sigma_z(scheduler):
    z, eps = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    t = torch.tensor([50, 600])
    alpha, sigma = alpha_sigma(scheduler, t)
    a, s = alpha.view(2, 1, 1, 1, 1), sigma.view(2, 1, 1, 1, 1)
    torch.testing.assert_close(scheduler.get_velocity(z, eps, t), a * eps - s * z)
    torch.testing.assert_close(scheduler.add_noise(z, eps, t), a * z + s * eps)


def test_masked_loss_ignores_reference_frames():
    prediction = torch.randn(2, 4, 3, 2, 2, requires_grad=True)
    target = torch.randn(2, 4, 3, 2, 2)
    gen = torch.tensor([[False, True, True, False], [True, False, False, False]])
    loss = masked_mse(prediction, target, gen)
    loss.backward()
    assert torch.all(prediction.grad[~gen] == 0)
    assert torch.all(prediction.grad[gen] != 0)
    # Changing reference-frame predictions changes neither the loss nor any gradient.
    changed = prediction.detach().clone()
    changed[~gen] += 100.0
    changed.requires_grad_(True)
    loss2 = masked_mse(changed, target, gen)
    loss2.backward()
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(changed.grad, prediction.grad)
    expected = ((prediction.detach() - target) ** 2)[gen].mean()
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="no frame is marked"):
        masked_mse(prediction, target, torch.zeros_like(gen))


def test_joint_loss_reaches_planner_and_generator(scheduler):
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny"))
    zh, zl = torch.randn(2, 5, 16, 8, 8), torch.randn(2, 5, 16, 4, 4)
    gen = torch.ones(2, 5, dtype=torch.bool)
    gen[:, 0] = gen[:, -1] = False
    # Eq. 3 trains the generator's output layer from the first step (its other layers start behind
    # zero gates, adaLN-Zero); Eq. 2 trains the planner through its projection head.
    loss = masked_diffusion_loss(m.generator, scheduler, zh, gen, m.planner(zl, gen), plan_dropout=0.1,
                                 rng=torch.Generator().manual_seed(0))
    loss.backward()
    assert m.generator.out_proj.weight.grad.abs().sum() > 0
    loss_rec = masked_reconstruction_loss(m.planner, zl, gen)
    m.zero_grad()
    loss_rec.backward()
    assert m.planner.head.weight.grad.abs().sum() > 0
    assert m.planner.blocks[0].st_attn.to_q.weight.grad.abs().sum() > 0


def _random_generator_model():
    torch.manual_seed(0)
    m = MarDini(get_preset("mardini-tiny")).eval()
    wake_zero_init(m.generator)
    return m


def _guidance_window(reference: int, step: int):
    """A random tiny model and a 2 x 5-frame window with one reference: (model, latents, mask, plan, t)."""
    m = _random_generator_model()
    zh, zl = torch.randn(2, 5, 16, 8, 8), torch.randn(2, 5, 16, 4, 4)
    gen = torch.ones(2, 5, dtype=torch.bool)
    gen[:, reference] = False
    return m, zh, gen, m.planner(zl, gen), torch.tensor([step, step])


def test_guidance_scale_one_is_the_conditional_prediction_and_scale_s_extrapolates():
    m, zh, gen, plan, t = _guidance_window(2, 400)
    with torch.no_grad():
        cond = m.generator(zh, t, gen, plan)
        uncond = m.generator(zh, t, gen, None)
        assert torch.equal(guided_denoiser(m.generator, gen, plan, 1.0)(zh, t), cond)
        guided = guided_denoiser(m.generator, gen, plan, 2.5)(zh, t)
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond), atol=1e-5, rtol=1e-5)


def test_skip_layer_guidance_pushes_away_from_the_generator_without_one_block():
    m, zh, gen, plan, t = _guidance_window(0, 300)
    g = m.generator
    with torch.no_grad():
        cond, uncond = g(zh, t, gen, plan), g(zh, t, gen, None)
        # The weakened network is the generator with that block left out: the same as a copy of it
        # that never had the block.
        skipped = g(zh, t, gen, plan, skip_block=-1)
        blocks = g.blocks
        g.blocks = torch.nn.ModuleList(list(blocks)[:-1])
        try:
            without = g(zh, t, gen, plan)
        finally:
            g.blocks = blocks
        assert torch.equal(skipped, without) and not torch.allclose(skipped, cond)
        assert torch.equal(g(zh, t, gen, plan, skip_block=len(blocks) - 1), skipped)
        assert not torch.allclose(g(zh, t, gen, plan, skip_block=0), skipped)
        # Scale 0 is the plain (CFG) denoiser; w > 0 adds w * (v_cond - v_skip), with CFG or without.
        assert torch.equal(guided_denoiser(g, gen, plan, 2.5, 0.0)(zh, t), guided_denoiser(g, gen, plan, 2.5)(zh, t))
        torch.testing.assert_close(guided_denoiser(g, gen, plan, 2.5, 0.3)(zh, t),
                                   uncond + 2.5 * (cond - uncond) + 0.3 * (cond - skipped), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(guided_denoiser(g, gen, plan, 1.0, 0.3, 0)(zh, t),
                                   cond + 0.3 * (cond - g(zh, t, gen, plan, skip_block=0)), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="skip_block 2 is not a block of this 2-block generator"):
        g(zh, t, gen, plan, skip_block=2)
    with pytest.raises(ValueError, match="must be >= 0"):
        guided_denoiser(g, gen, plan, 1.0, -0.1)


def test_the_pipeline_samples_with_the_configured_skip_layer_guidance_where_it_guides():
    from mardini import MarDiniPipeline
    from mardini.checkpoint import untrained_codec

    m = _random_generator_model()
    pipe = MarDiniPipeline(m, untrained_codec(m.config))
    zh, zl = torch.randn(1, 5, 16, 8, 8), torch.randn(1, 5, 16, 4, 4)
    gen = torch.tensor([[False, True, True, True, True]])
    run = lambda: pipe.sample(zh, zl, gen, steps=3, guidance_scale=2.5,  # noqa: E731
                              generator=torch.Generator().manual_seed(0), progress=False)
    plain = run()
    unguided = pipe.sample(zh, zl, gen, steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                           progress=False)
    pipe.config.diffusion.skip_guidance = 0.5
    guided = run()
    assert torch.equal(guided, run()) and not torch.allclose(plain, guided)
    assert torch.equal(guided[:, 0], zh[:, 0])  # the reference stays as given
    # It rides with classifier-free guidance: without CFG (in-betweens, loops) nothing changes.
    assert torch.equal(pipe.sample(zh, zl, gen, steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                                   progress=False), unguided)


def test_one_ddim_step_matches_closed_form(scheduler):
    torch.manual_seed(0)
    sched = make_scheduler(DiffusionConfig())
    sched.set_timesteps(25)
    t, t_prev = sched.timesteps[3], sched.timesteps[4]
    x, v = torch.randn(1, 3, 4, 2, 2), torch.randn(1, 3, 4, 2, 2)
    (a, a_prev), (s, s_prev) = alpha_sigma(sched, torch.stack([t, t_prev]))
    x0 = a * x - s * v          # v-prediction: z = alpha * z_t - sigma * v
    eps = s * x + a * v         #               eps = sigma * z_t + alpha * v
    expected = a_prev * x0 + s_prev * eps
    torch.testing.assert_close(sched.step(v, t, x, eta=0.0).prev_sample, expected, atol=1e-5, rtol=1e-5)


def test_single_step_sampler_closed_form_keeps_references(scheduler):
    # One step from t = 999 (alpha = 0, sigma = 1): x0 = -v, and the final step lands on x0.
    latents = torch.randn(2, 4, 3, 2, 2)
    gen = torch.tensor([[False, True, True, False], [True, True, True, False]])
    v = torch.randn_like(latents)
    out = sample_ddim(lambda x, t: v, latents, gen, scheduler, steps=1, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[gen], -v[gen])
    assert torch.equal(out[~gen], latents[~gen])


def test_sampler_is_seeded_and_keeps_references_exactly(scheduler):
    m = _random_generator_model()
    zh, zl = torch.randn(1, 5, 16, 8, 8), torch.randn(1, 5, 16, 4, 4)
    gen = torch.tensor([[True, True, False, True, True]])
    calls = []

    def plan_once():
        calls.append(1)
        return m.planner(zl, gen)

    with torch.no_grad():
        denoise = guided_denoiser(m.generator, gen, plan_once(), 2.5)
        a = sample_ddim(denoise, zh, gen, scheduler, steps=4, rng=torch.Generator().manual_seed(7))
        b = sample_ddim(denoise, zh, gen, scheduler, steps=4, rng=torch.Generator().manual_seed(7))
        c = sample_ddim(denoise, zh, gen, scheduler, steps=4, rng=torch.Generator().manual_seed(8))
    assert len(calls) == 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[~gen], zh[~gen])
    with pytest.raises(ValueError, match="at least 1"):
        sample_ddim(denoise, zh, gen, scheduler, steps=0)


# --- the reference prior (mardini.diffusion.prior; our addition, not in the paper) ---------------

def test_reference_interpolation_between_beside_and_at_references():
    z = torch.randn(3, 6, 2, 2, 2)
    gen = torch.tensor([[False, True, True, False, True, True],    # interpolation, then past the end
                        [True, True, False, True, True, True],     # one reference mid-clip (i2v)
                        [True, True, True, True, True, True]])     # no reference at all
    prior = reference_interpolation(z, gen)
    assert torch.equal(prior[~gen], z[~gen])  # references exactly as given
    torch.testing.assert_close(prior[0, 1], z[0, 0] * 2 / 3 + z[0, 3] / 3)
    torch.testing.assert_close(prior[0, 2], z[0, 0] / 3 + z[0, 3] * 2 / 3)
    assert torch.equal(prior[0, 4], z[0, 3]) and torch.equal(prior[0, 5], z[0, 3])  # beyond: nearest
    for k in range(6):
        assert torch.equal(prior[1, k], z[1, 2])  # one reference: a copy of it everywhere
    assert torch.equal(prior[2], torch.zeros_like(z[2]))
    with pytest.raises(ValueError, match="do not match"):
        reference_interpolation(z, gen[:, :5])
    assert diffusion_prior(DiffusionConfig(), z, gen) is None  # the paper's formulation
    prior = diffusion_prior(DiffusionConfig(prior="reference_interpolation", prior_scale=0.5), z, gen)
    assert torch.equal(prior.mean, reference_interpolation(z, gen)) and prior.scale == 0.5
    with pytest.raises(ValueError, match="unknown diffusion prior"):
        DiffusionConfig(prior="linear")
    changed = DiffusionConfig()
    changed.prior = "linear"  # a config edited after it was checked
    with pytest.raises(ValueError, match="unknown diffusion prior"):
        diffusion_prior(changed, z, gen)
    with pytest.raises(ValueError, match="prior_scale must be positive"):
        DiffusionConfig(prior_scale=0.0)


def test_between_references_prior_keeps_the_papers_formulation_beyond_the_references(scheduler):
    z = torch.randn(3, 6, 2, 2, 2)
    gen = torch.tensor([[False, True, True, False, True, True],    # interpolation, then past the end
                        [True, True, False, True, True, True],     # one reference mid-clip (i2v)
                        [False, True, True, True, True, False]])   # first + last (interpolation)
    assert torch.equal(between_references(gen), torch.tensor([[False, True, True, False, False, False],
                                                              [False] * 6,
                                                              [False, True, True, True, True, False]]))
    prior = diffusion_prior(DiffusionConfig(prior="between_references", prior_scale=0.5), z, gen)
    inside = between_references(gen)
    full = reference_interpolation(z, gen)
    assert torch.equal(prior.mean[inside], full[inside]) and torch.equal(prior.mean[~gen], z[~gen])
    assert not prior.mean[gen & ~inside].any()  # image-to-video and expansion frames: mean 0 ...
    assert torch.equal(prior.scale[:, :, 0, 0, 0], torch.where(inside, 0.5, 1.0))  # ... and scale 1, as without
    # So an image-to-video clip samples exactly as without a prior, and an in-between around the
    # interpolation (a network that predicts nothing returns it).
    v = torch.randn_like(z)
    rng = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    with_prior = sample_ddim(lambda x, t: v, z, gen, scheduler, steps=2, rng=rng(), prior=prior)
    without = sample_ddim(lambda x, t: v, z, gen, scheduler, steps=2, rng=rng())
    assert torch.equal(with_prior[1], without[1])
    zero = sample_ddim(lambda x, t: torch.zeros_like(x), z, gen, scheduler, steps=1, prior=prior)
    assert torch.equal(zero[inside], full[inside])


def test_loss_with_a_prior_noises_the_scaled_residual_and_targets_its_velocity(scheduler):
    z = torch.randn(2, 5, 4, 2, 2)
    gen = torch.tensor([[False, True, True, True, False]] * 2)
    prior = reference_interpolation(z, gen)
    seen = {}

    def spy(inputs, t, mask, plan, drop_plan=None):
        seen["inputs"], seen["t"] = inputs, t
        return torch.zeros_like(inputs)

    loss = masked_diffusion_loss(spy, scheduler, z, gen, rng=torch.Generator().manual_seed(3),
                                 prior=Prior(prior, 0.5))
    # Replay the same draws: timestep, then noise.
    rng = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (2,), generator=rng)
    eps = torch.randn(z.shape, generator=rng)
    a, s = (x.view(2, 1, 1, 1, 1) for x in alpha_sigma(scheduler, t))
    residual = (z - prior) / 0.5
    assert torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["inputs"][gen], (prior + 0.5 * (a * residual + s * eps))[gen])
    assert torch.equal(seen["inputs"][~gen], z[~gen])
    target = a * eps - s * residual  # velocity of the scaled residual
    torch.testing.assert_close(loss, (target[gen] ** 2).mean())


def test_sampler_with_a_prior_runs_on_the_scaled_residual(scheduler):
    latents = torch.randn(2, 5, 3, 2, 2)
    gen = torch.tensor([[False, True, True, True, False], [True, True, False, True, True]])
    prior = reference_interpolation(latents, gen)
    v = torch.randn_like(latents)
    seen = []

    def denoise(x, t):
        seen.append(x)
        return v

    # One step from t = 999 (alpha = 0): the residual is -v, so the frame is prior - 0.5 v ...
    out = sample_ddim(denoise, latents, gen, scheduler, steps=1, rng=torch.Generator().manual_seed(0),
                      prior=Prior(prior, 0.5))
    torch.testing.assert_close(out[gen], (prior - 0.5 * v)[gen])
    assert torch.equal(out[~gen], latents[~gen])
    # ... and the network saw (scaled) noise around the prior, with the references as they are.
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0][gen], (prior + 0.5 * noise)[gen])
    assert torch.equal(seen[0][~gen], latents[~gen])
    # A network that predicts nothing returns the prior itself.
    out = sample_ddim(lambda x, t: torch.zeros_like(x), latents, gen, scheduler, steps=1, prior=Prior(prior, 0.5))
    assert torch.equal(out, prior)


def test_between_equal_references_marks_the_frames_of_a_loop():
    from mardini.diffusion import between_equal_references

    latents = torch.randn(2, 6, 3, 2, 2)
    latents[0, 5] = latents[0, 0]  # clip 0: the same frame at both ends, as a loop gives
    gen = torch.tensor([[False, True, True, True, True, False]] * 2)
    marked = between_equal_references(latents, gen)
    assert marked[0].tolist() == [False, True, True, True, True, False] and not marked[1].any()
    # Frames beyond the references have no pair, references are never marked.
    beyond = torch.tensor([[False, True, True, True, True, True]] * 2)
    assert not between_equal_references(latents, beyond).any()
    # Two loops in one window: only the frames between the equal pair.
    two = latents.clone()
    two[1, 3] = two[1, 0]
    mixed = torch.tensor([[False, True, True, False, True, False]] * 2)
    assert between_equal_references(two, mixed)[1].tolist() == [False, True, True, False, False, False]
    with pytest.raises(ValueError, match="do not match the frame mask"):
        between_equal_references(latents[:, :4], gen)


def test_default_steps_give_a_loop_the_full_sampler():
    from mardini.config import DiffusionConfig
    from mardini.diffusion import default_steps

    config = DiffusionConfig(prior="reference_interpolation", inbetween_steps=1, sampling_steps=25)
    gen = torch.tensor([[False, True, True, False]])
    latents = torch.randn(1, 4, 2, 2, 2)
    assert default_steps(config, gen) == 1 and default_steps(config, gen, latents) == 1
    latents[:, 3] = latents[:, 0]
    assert default_steps(config, gen, latents) == 25
    assert default_steps(DiffusionConfig(inbetween_steps=1), gen, latents) == 25  # no prior: one default


def test_timestep_sampling_uniform_or_logit_normal_in_range_and_seeded():
    from mardini.diffusion import sample_timesteps

    rng = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    uniform = sample_timesteps(20000, 1000, rng=rng())
    assert uniform.dtype == torch.long and 0 <= uniform.min() and uniform.max() <= 999
    assert abs(uniform.float().mean().item() - 499.5) < 10 and (uniform >= 900).float().mean() > 0.08
    middle = sample_timesteps(20000, 1000, "logit_normal", 0.0, 1.0, rng=rng())
    assert 0 <= middle.min() and middle.max() <= 999 and abs(middle.float().median().item() - 500) < 15
    # Concentrated on the middle: fewer draws at either end than uniform gives.
    assert (middle < 100).float().mean() < 0.05 and (middle >= 900).float().mean() < 0.05
    lower = sample_timesteps(20000, 1000, "logit_normal", -0.5, 1.0, rng=rng())
    assert lower.float().median() < 400  # sigmoid(-0.5) = 0.38
    assert torch.equal(lower, sample_timesteps(20000, 1000, "logit_normal", -0.5, 1.0, rng=rng()))
    with pytest.raises(ValueError, match="unknown timestep sampling 'cosine'"):
        sample_timesteps(4, 1000, "cosine")
    with pytest.raises(ValueError, match="positive std"):
        sample_timesteps(4, 1000, "logit_normal", 0.0, 0.0)


def test_terminal_share_puts_that_share_of_clips_at_the_last_timestep_and_keeps_the_rest():
    from mardini.diffusion import sample_timesteps

    rng = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = sample_timesteps(20000, 1000, rng=rng())
    shared = sample_timesteps(20000, 1000, rng=rng(), terminal_share=0.3)
    # The other clips keep their draws: the terminal choice is drawn after them.
    moved = shared != plain
    assert torch.equal(shared[~moved], plain[~moved]) and (shared[moved] == 999).all()
    assert abs((shared == 999).float().mean().item() - 0.3) < 0.02
    assert torch.equal(sample_timesteps(20000, 1000, rng=rng(), terminal_share=0.0), plain)
    assert (sample_timesteps(50, 1000, "logit_normal", rng=rng(), terminal_share=1.0) == 999).all()
    with pytest.raises(ValueError, match="terminal timestep share must be in"):
        sample_timesteps(4, 1000, terminal_share=1.5)


def test_terminal_share_reaches_the_loss(monkeypatch):
    """The trainer's loss draws its timesteps with the stage's terminal share."""
    import mardini.diffusion.losses as losses
    from mardini.config import DiffusionConfig
    from mardini.diffusion import make_scheduler

    seen = []
    original = losses.sample_timesteps
    monkeypatch.setattr(losses, "sample_timesteps", lambda *a, **k: seen.append(a[-1]) or original(*a, **k))
    generator = lambda x, t, mask, plan, drop_plan=None: torch.zeros_like(x)  # noqa: E731
    latents, gen = torch.randn(3, 4, 2, 4, 4), torch.tensor([[False, True, True, False]] * 3)
    losses.masked_diffusion_loss(generator, make_scheduler(DiffusionConfig()), latents, gen,
                                 rng=torch.Generator().manual_seed(0), terminal_share=0.5)
    assert seen == [0.5]


def test_masked_mse_per_clip_averages_within_each_clip_and_matches_the_batch_mean():
    from mardini.diffusion import masked_mse

    prediction, target = torch.zeros(2, 3, 1, 2, 2), torch.ones(2, 3, 1, 2, 2)
    target[1] *= 3.0  # clip 1 errs 3 per element, clip 0 errs 1
    target[:, 0] = 100.0  # a reference frame: never counted
    gen = torch.tensor([[False, True, True], [False, True, False]])
    per_clip = masked_mse(prediction, target, gen, per_clip=True)
    assert torch.allclose(per_clip, torch.tensor([1.0, 9.0]))
    # Batch mean over elements: clip 0 has twice the generated elements of clip 1.
    assert torch.isclose(masked_mse(prediction, target, gen), torch.tensor((2 * 1.0 + 9.0) / 3))
    with pytest.raises(ValueError, match="a clip has no frame marked to generate"):
        masked_mse(prediction, target, torch.tensor([[False, True, True], [False, False, False]]), per_clip=True)


def test_log_clip_loss_weighs_every_clips_relative_error_alike():
    from mardini.diffusion import log_clip_loss

    errors = torch.tensor([1e-3, 1.0], requires_grad=True)
    loss = log_clip_loss(errors, floor=1e-4)
    assert torch.isclose(loss, (torch.log(torch.tensor(1.1e-3)) + torch.log(torch.tensor(1.0001))) / 2)
    loss.backward()
    # Halving either clip's error lowers the loss by the same amount; the gradient is 1 / (2 (e + floor)).
    assert torch.allclose(errors.grad, 0.5 / (errors.detach() + 1e-4))
    with pytest.raises(ValueError, match="needs a positive floor"):
        log_clip_loss(errors, floor=0.0)
    # Only some clips logged: the others enter as the log of their mean, once per clip.
    four = torch.tensor([1e-3, 0.5, 2e-3, 1.5])
    logged = torch.tensor([True, False, True, False])
    expected = (torch.log(four[0] + 1e-4) + torch.log(four[2] + 1e-4) + 2 * torch.log(torch.tensor(1.0 + 1e-4))) / 4
    assert torch.isclose(log_clip_loss(four, 1e-4, logged), expected)
    assert torch.isclose(log_clip_loss(four, 1e-4, torch.ones(4, dtype=torch.bool)), log_clip_loss(four, 1e-4))
    assert torch.isclose(log_clip_loss(four, 1e-4, torch.zeros(4, dtype=torch.bool)), torch.log(four.mean() + 1e-4))


def test_clip_weighting_reaches_the_loss_and_changes_only_how_clips_combine():
    from mardini.config import DiffusionConfig
    from mardini.diffusion import make_scheduler, masked_diffusion_loss, masked_mse

    scheduler = make_scheduler(DiffusionConfig())
    latents, gen = torch.randn(3, 4, 2, 4, 4), torch.tensor([[False, True, True, False]] * 3)
    seen = {}

    def generator(x, t, mask, plan, drop_plan=None):
        seen["prediction"] = torch.full_like(x, 0.1)
        return seen["prediction"]

    def loss(**kw):  # the same seed, so the same timesteps and noise every call
        return masked_diffusion_loss(generator, scheduler, latents, gen, rng=torch.Generator().manual_seed(0), **kw)

    elements = loss()
    logged = loss(clip_weighting="log", clip_loss_floor=1e-3)
    # The per-clip errors, rebuilt from the same draws, give both reductions.
    from mardini.diffusion import sample_timesteps

    rng = torch.Generator().manual_seed(0)
    t = sample_timesteps(3, scheduler.config.num_train_timesteps, rng=rng)
    noise = torch.randn(latents.shape, generator=rng)
    target = scheduler.get_velocity(latents, noise, t)
    per_clip = masked_mse(seen["prediction"], target, gen, per_clip=True)
    assert torch.isclose(elements, per_clip.mean())  # equal frame counts: the two means agree
    assert torch.isclose(logged, torch.log(per_clip + 1e-3).mean())
    # log_inbetweens: clip 0 generates only in-betweens, clips 1 and 2 a frame past their last reference.
    gen = torch.tensor([[False, True, True, False], [False, True, True, True], [False, False, True, True]])
    split = loss(clip_weighting="log_inbetweens", clip_loss_floor=1e-3)
    per_clip = masked_mse(seen["prediction"], target, gen, per_clip=True)
    assert torch.isclose(split, (torch.log(per_clip[0] + 1e-3) + 2 * torch.log(per_clip[1:].mean() + 1e-3)) / 3)
    # A loop (equal references around its in-betweens) has no single answer: in the group, not logged.
    gen = torch.tensor([[False, True, True, False]] * 3)
    latents[1:, -1] = latents[1:, 0]
    looped = loss(clip_weighting="log_inbetweens", clip_loss_floor=1e-3)
    target = scheduler.get_velocity(latents, noise, t)
    per_clip = masked_mse(seen["prediction"], target, gen, per_clip=True)
    assert torch.isclose(looped, (torch.log(per_clip[0] + 1e-3) + 2 * torch.log(per_clip[1:].mean() + 1e-3)) / 3)
    assert not torch.isclose(looped, torch.log(per_clip + 1e-3).mean())
    with pytest.raises(ValueError, match="unknown clip weighting"):
        loss(clip_weighting="median")


def test_stage_config_checks_the_timestep_sampling(tmp_path):
    from mardini.training import load_stage_config

    path = tmp_path / "stage.yaml"
    path.write_text("train: joint\ninit: mardini-tiny\n")
    cfg = load_stage_config(path, ["timestep_sampling=logit_normal", "timestep_mean=-0.5"])
    assert (cfg.timestep_sampling, cfg.timestep_mean, cfg.timestep_std) == ("logit_normal", -0.5, 1.0)
    assert load_stage_config(path).timestep_sampling == "uniform"  # the paper's, by default
    with pytest.raises(ValueError, match="timestep_sampling must be one of"):
        load_stage_config(path, ["timestep_sampling=beta"])
    with pytest.raises(ValueError, match="timestep_std a positive one"):
        load_stage_config(path, ["timestep_sampling=logit_normal", "timestep_std=0"])
    assert load_stage_config(path, ["timestep_terminal_share=0.25"]).timestep_terminal_share == 0.25
    with pytest.raises(ValueError, match="timestep_terminal_share must be a share in"):
        load_stage_config(path, ["timestep_terminal_share=-0.1"])
    assert load_stage_config(path).clip_weighting == "elements"  # the paper's, by default
    cfg = load_stage_config(path, ["clip_weighting=log", "clip_loss_floor=1.0e-3"])
    assert (cfg.clip_weighting, cfg.clip_loss_floor) == ("log", 1.0e-3)
    with pytest.raises(ValueError, match="clip_weighting must be one of"):
        load_stage_config(path, ["clip_weighting=mean"])
    with pytest.raises(ValueError, match="clip_loss_floor must be a positive number"):
        load_stage_config(path, ["clip_weighting=log", "clip_loss_floor=0"])


def test_shifted_grid_moves_the_denoisers_input_and_crops_back():
    from mardini.diffusion import shifted_grid

    seen: list[torch.Tensor] = []

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x * 2  # a pointwise map: after the crop, a moved call must give what the unmoved one does

    x = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 3, 1, 4, 4)
    t = torch.zeros(2)
    assert shifted_grid(denoise, "none", patch_size=2) is denoise
    alternate = shifted_grid(denoise, "alternate", patch_size=2)  # moved by 1
    for _ in range(3):
        assert torch.equal(alternate(x, t), x * 2)
    # First call unmoved (a one-step sampler is unchanged), then every other one moved.
    assert [tuple(s.shape[-2:]) for s in seen] == [(4, 4), (6, 6), (4, 4)]
    # The moved input is the latents shifted one pixel down and right, edges replicated.
    assert torch.equal(seen[1][..., 1:5, 1:5], x) and torch.equal(seen[1][..., 0, 1:5], x[..., 0, :])
    seen.clear()
    assert torch.equal(shifted_grid(denoise, "average", patch_size=2)(x, t), x * 2) and len(seen) == 2
    seen.clear()
    shifted_grid(denoise, "average", patch_size=1)(x, t)  # a patch of 1 still moves by a pixel
    assert [tuple(s.shape[-2:]) for s in seen] == [(4, 4), (6, 6)]
    with pytest.raises(ValueError, match="unknown grid shift 'sideways'"):
        shifted_grid(denoise, "sideways", patch_size=2)
    with pytest.raises(ValueError, match="patch size must be at least 1"):
        shifted_grid(denoise, "alternate", patch_size=0)
    with pytest.raises(ValueError, match="unknown grid_shift 'diagonal'"):
        DiffusionConfig(grid_shift="diagonal")

