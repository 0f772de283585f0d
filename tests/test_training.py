"""The training system (issue: progressive recipe, exact resume, signals, bad data)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mardini.checkpoint import load_model
from mardini.training import MaskSchedule, TrainingError, load_stage_config, train
from mardini.training.state import latest_usable_checkpoint, list_checkpoints

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tiny"
STAGES = ["stage1a_generator", "stage1b_planner", "stage2_joint_interpolation", "stage2b_reference_prior",
          "stage2c_camera_motion", "stage3_joint_task", "stage3b_inbetween_prior", "stage3c_few_references"]


def _stage(name, codec_dir, *overrides):
    return load_stage_config(CONFIGS / f"{name}.yaml", [f"codec={codec_dir}", *overrides])


def _records(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def _losses(run):
    """The logged losses; preview-score records (``preview_*``, no loss) are left out."""
    return [r["loss"] for r in _records(run) if "loss" in r]


def _previews(run):
    return [r for r in _records(run) if "preview_seam" in r]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, codec_dir):
    """Every stage of configs/tiny, each starting from the previous stage's run folder."""
    root = tmp_path_factory.mktemp("recipe")
    previous = None
    runs = {}
    for name in STAGES:
        overrides = [] if previous is None else [f"init={previous}"]
        if previous is not None:
            overrides.append("codec=null")
        cfg = load_stage_config(CONFIGS / f"{name}.yaml", overrides if previous else [f"codec={codec_dir}"])
        runs[name] = train(cfg, root / name, progress=False)
        previous = root / name
    return runs


def test_every_stage_runs_from_the_previous_checkpoint(recipe):
    stage1a = load_model(recipe["stage1a_generator"])
    stage1b = load_model(recipe["stage1b_planner"])
    stage2 = load_model(recipe["stage2_joint_interpolation"])
    stage3 = load_model(recipe["stage3_joint_task"])
    # 1b trains only the planner: the generator it carries is 1a's (EMA) generator, unchanged.
    for key, value in stage1a.generator.state_dict().items():
        assert torch.equal(value, stage1b.generator.state_dict()[key]), key
    assert not torch.equal(stage1a.planner.blocks[0].st_attn.to_q.weight, stage1b.planner.blocks[0].st_attn.to_q.weight)
    # Stage 2 drops the projection head and switches the generator to temporal attention.
    assert stage2.planner.head is None and stage2.config.generator.attention == "temporal"
    assert stage3.config.num_frames == 5 and stage3.planner.head is None
    from PIL import Image

    for name, run in recipe.items():
        losses = _losses(run.parent.parent)
        assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
        # Periodic samples: a GIF of truth above prediction, one frame per clip frame.
        with Image.open(run.parent.parent / "samples" / "step-0000004.gif") as gif:
            # Stage 1b shows the planner's head reconstruction, at the planner's (low) resolution.
            assert gif.n_frames == 5 and gif.size == ((32, 64) if name == "stage1b_planner" else (64, 128))
        # Each generator preview is scored (stage 1b previews the planner's reconstruction: none).
        assert [r["step"] for r in _previews(run.parent.parent)] == ([] if name == "stage1b_planner" else [4])


def test_stage_checkpoint_loads_in_the_pipeline(recipe):
    from mardini import MarDiniPipeline

    pipe = MarDiniPipeline.from_pretrained(recipe["stage3_joint_task"])
    assert pipe.model.config.generator.attention == "temporal"
    assert pipe.model.config.diffusion.prior == "reference_interpolation"  # kept from stage 2b


def test_switching_the_prior_zeroes_only_the_output_layer(recipe, codec_dir):
    from mardini.training.trainer import _build_model

    stage2 = load_model(recipe["stage2_joint_interpolation"])
    assert stage2.config.diffusion.prior == "none"
    cfg = _stage("stage2b_reference_prior", codec_dir, f"init={recipe['stage2_joint_interpolation'].parent.parent}")
    model, _, _ = _build_model(cfg)
    assert model.config.diffusion.prior == "reference_interpolation"
    before, after = stage2.generator.state_dict(), model.generator.state_dict()
    output = {"out_proj.weight", "out_proj.bias", "out_modulation.1.weight", "out_modulation.1.bias"}
    for key, value in after.items():
        if key in output:
            assert not value.any() and before[key].any(), key
        else:
            assert torch.equal(value, before[key]), key
    # A stage that leaves `prior` out keeps the checkpoint's, output layer and all.
    kept, _, _ = _build_model(_stage("stage3_joint_task", codec_dir, f"init={recipe['stage2b_reference_prior']}"))
    assert kept.config.diffusion.prior == "reference_interpolation" and kept.generator.out_proj.weight.any()
    # Between two priors (they agree on the in-betweens) the output layer is kept too.
    moved, _, _ = _build_model(_stage("stage3_joint_task", codec_dir, f"init={recipe['stage2b_reference_prior']}",
                                      "prior=between_references"))
    assert moved.config.diffusion.prior == "between_references"
    assert torch.equal(moved.generator.out_proj.weight, kept.generator.out_proj.weight)


def test_a_stage_grows_the_generator_output_conv_and_keeps_a_trained_one(recipe, codec_dir, tmp_path):
    from mardini.training.trainer import _build_model

    start = recipe["stage2_joint_interpolation"]
    plain = load_model(start)
    assert plain.config.generator.output_conv == 0
    grown, _, _ = _build_model(_stage("stage3_joint_task", codec_dir, f"init={start}", "generator_output_conv=8"))
    assert grown.config.generator.output_conv == 8 and not grown.generator.output_conv[-1].weight.any()
    for key, value in plain.generator.state_dict().items():  # everything else as trained
        assert torch.equal(grown.generator.state_dict()[key], value), key
    # Trained with it, the checkpoint carries it; a later stage keeps it and may not change its width.
    cfg = _stage("stage3_joint_task", codec_dir, f"init={start}", "generator_output_conv=8", "steps=2",
                 "checkpoint_every=100")
    run = train(cfg, tmp_path / "grown", progress=False)
    assert load_model(run).generator.output_conv[-1].weight.any()
    kept, _, _ = _build_model(_stage("stage3_joint_task", codec_dir, f"init={run}"))
    assert kept.config.generator.output_conv == 8
    with pytest.raises(ValueError, match="already has one of width 8"):
        _build_model(_stage("stage3_joint_task", codec_dir, f"init={run}", "generator_output_conv=16"))
    for bad in ("-1", "true", "2.5"):
        with pytest.raises(ValueError, match="generator_output_conv must be"):
            _stage("stage3_joint_task", codec_dir, f"generator_output_conv={bad}")


class _Scalars:
    """A stand-in TensorBoard writer (the package is optional) that keeps what it is given."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def close(self):
        pass


def test_previews_write_their_block_and_sharpness_scores(tmp_path, codec_dir, monkeypatch):
    import mardini.training.trainer as trainer

    writer = _Scalars()
    monkeypatch.setattr(trainer, "_tensorboard", lambda out_dir: writer)
    # Interpolation masks: first and last frames given, the 3 between generated.
    cfg = _stage("stage2_joint_interpolation", codec_dir, "init=mardini-tiny", "steps=4", "sample_every=2",
                 "checkpoint_every=100")
    train(cfg, tmp_path / "run", progress=False)
    previews = _previews(tmp_path / "run")
    assert [r["step"] for r in previews] == [2, 4]
    for r in previews:
        assert r.keys() == {"step", "preview_seam", "preview_sharpness", "preview_generated_frames"}
        assert r["preview_generated_frames"] == 3
        assert math.isfinite(r["preview_seam"]) and r["preview_seam"] > 0
        assert math.isfinite(r["preview_sharpness"]) and r["preview_sharpness"] > 0
    assert len(_losses(tmp_path / "run")) == 4  # the loss records are unchanged
    logged = [(tag, step) for tag, _, step in writer.scalars if tag.startswith("preview/")]
    assert logged == [("preview/seam", 2), ("preview/sharpness", 2), ("preview/seam", 4), ("preview/sharpness", 4)]


def _tiles(frames: torch.Tensor, token: int, levels: float = 12.0) -> torch.Tensor:
    """Each token-sized tile shifted by its own brightness offset: the image-to-video block mosaic."""
    h, w = frames.shape[-2:]
    offsets = (torch.rand(1, 1, h // token, w // token, generator=torch.Generator().manual_seed(0)) - 0.5) * 2 * levels
    offsets = offsets.repeat_interleave(token, -2).repeat_interleave(token, -1)
    return (frames.float() + offsets).round().clamp(0, 255).to(torch.uint8)


def test_preview_scores_see_a_token_mosaic_only_in_generated_frames():
    from mardini.config import get_preset
    from mardini.training.trainer import preview_scores

    config = get_preset("mardini-tiny")  # 8-px codec, patch size 2: 16-px tokens
    # A smooth image with fine texture (not aligned to any grid), 5 frames.
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = 128 + 50 * torch.sin(x / 16.0 + y / 23.0)
    texture = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 6
    truth = (smooth + texture).round().clamp(0, 255).to(torch.uint8)
    generate = torch.tensor([False, True, True, True, False])
    clean = preview_scores(truth, truth, generate, config)
    assert clean["preview_generated_frames"] == 3
    assert 0.85 < clean["preview_seam"] < 1.15, clean
    assert clean["preview_sharpness"] == pytest.approx(1.0)
    tiled = _tiles(truth, 16)
    assert preview_scores(truth, tiled, generate, config)["preview_seam"] > 2.0
    # The mosaic only in the given (copied) frames is not the generator's: it does not count.
    given_only = torch.where(generate[:, None, None, None], truth, tiled)
    assert 0.85 < preview_scores(truth, given_only, generate, config)["preview_seam"] < 1.15
    # Blurrier than the truth (a 3x3 box blur): sharpness well below 1.
    blurred = torch.nn.functional.avg_pool2d(truth.float(), 3, stride=1, padding=1, count_include_pad=False)
    blurred = blurred.round().to(torch.uint8)
    assert preview_scores(truth, blurred, generate, config)["preview_sharpness"] < 0.5
    assert preview_scores(truth, truth, torch.zeros(5, dtype=torch.bool), config) is None


@pytest.mark.parametrize("stage", ["stage2_joint_interpolation", "stage1a_generator", "stage1b_planner"])
def test_resume_is_exact(tmp_path, codec_dir, stage):
    # Stages 1a/1b train one network, some of whose parameters never get a gradient (e.g. the
    # generator's plan projection under Z_uncond) and so never get AdamW state: resume must cope.
    cfg = _stage(stage, codec_dir, "init=mardini-tiny", "steps=6", "checkpoint_every=100")
    straight = train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "split", max_steps=3, progress=False)
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert resumed.name == straight.name == "step-0000006"
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "straight"), rel=1e-5, abs=1e-6)
    for file in ("model.safetensors", "training/weights.safetensors", "training/optimizer.safetensors"):
        a, b = load_file(straight / file), load_file(resumed / file)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{file}:{key}")


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, codec_dir):
    cfg = _stage("stage1a_generator", codec_dir, "steps=4", "checkpoint_every=2", "keep_checkpoints=3")
    train(cfg, tmp_path / "run", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-0000002", "step-0000004"]
    newest = tmp_path / "run" / "checkpoints" / "step-0000004" / "training" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:50])
    with pytest.warns(UserWarning, match="damaged or incomplete"):
        found = latest_usable_checkpoint(tmp_path / "run")
    assert found[0].name == "step-0000002"
    # A half-written checkpoint (still under its temporary name) is never picked up.
    (tmp_path / "run" / "checkpoints" / "step-0000006.tmp").mkdir()
    with pytest.warns(UserWarning):
        assert latest_usable_checkpoint(tmp_path / "run")[0].name == "step-0000002"


def test_non_finite_loss_stops_without_a_poisoned_checkpoint(tmp_path, codec_dir):
    cfg = _stage("stage1a_generator", codec_dir, "steps=4", "checkpoint_every=1", "optim.lr=1e30",
                 "optim.grad_clip=1e30", "optim.warmup_steps=1")
    with pytest.raises(TrainingError, match="loss.* became"):
        train(cfg, tmp_path / "run", progress=False)
    for checkpoint in list_checkpoints(tmp_path / "run"):
        latest = load_file(checkpoint / "training" / "weights.safetensors")
        assert all(torch.isfinite(v).all() for v in latest.values())


def test_sigterm_saves_a_loadable_checkpoint(tmp_path, codec_dir):
    script = (
        "from mardini.training import load_stage_config, train\n"
        f"cfg = load_stage_config({str(CONFIGS / 'stage1a_generator.yaml')!r}, "
        f"['codec={codec_dir}', 'steps=100000', 'checkpoint_every=100000'])\n"
        f"train(cfg, {str(tmp_path / 'run')!r}, progress=False)\n"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    # A preempted run exits with its own status, so a scheduler can tell it from a finished one.
    assert proc.returncode == 75, err.decode()[-2000:]
    assert b"stopped by signal" in out and b"status 75" in out
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    assert load_model(checkpoint).config.name == "mardini-tiny"


def test_mask_schedule():
    rng = torch.Generator().manual_seed(0)
    interp = MaskSchedule(mode="interpolation").sample(3, 9, 0.0, rng)
    assert interp[:, 0].logical_not().all() and interp[:, -1].logical_not().all() and interp[:, 1:-1].all()
    schedule = MaskSchedule(preserved=(0.3, 0.6), preserved_end=(0.11, 0.11))
    start = schedule.sample(2000, 9, 0.0, rng)
    end = schedule.sample(2000, 9, 1.0, rng)
    kept_start, kept_end = (~start).sum(1).float(), (~end).sum(1).float()
    assert kept_end.max() == 1 and kept_start.mean() > 3  # ends at image-to-video
    assert start.any(1).all() and (~start).any(1).all()   # always >= 1 reference and >= 1 generated
    positions = (~end).float().argmax(1)
    assert len(set(positions.tolist())) == 9               # the single reference can be anywhere


def test_mask_schedule_keeps_a_share_of_interpolation_masks():
    rng = torch.Generator().manual_seed(0)
    mixed = MaskSchedule(preserved=(0.11, 0.3), interpolation_share=0.25).sample(4000, 9, 0.0, rng)
    first_last = (~mixed[:, 0]) & (~mixed[:, -1]) & mixed[:, 1:-1].all(1)
    assert 0.2 < first_last.float().mean() < 0.3   # plus the rare random draw of exactly first+last
    assert mixed.any(1).all() and (~mixed).any(1).all()
    two = MaskSchedule(preserved=(0.5, 0.5), interpolation_share=1.0).sample(50, 2, 0.0, rng)
    assert two.any(1).all() and (~two).any(1).all()
    with pytest.raises(ValueError, match="interpolation_share"):
        MaskSchedule(interpolation_share=1.5)


def test_mask_schedule_task_mixture():
    rng = torch.Generator().manual_seed(0)
    schedule = MaskSchedule(mode="tasks", preserved=(0.3, 0.6),
                            tasks={"interpolation": 1, "image_to_video": 2, "expansion": 1})
    masks = schedule.sample(4000, 9, 0.0, rng)
    kept = ~masks
    first_last = kept[:, 0] & kept[:, -1] & masks[:, 1:-1].all(1)
    single = kept.sum(1) == 1
    prefix = kept.cumsum(1) == torch.arange(1, 10)  # kept frames form a prefix of the clip
    is_prefix = (prefix | masks).all(1) & kept[:, 0] & ~single
    assert 0.22 < first_last.float().mean() < 0.28
    # image-to-video (weight 2/4) plus expansion's k = 1 (1/4 of 1/4)
    assert 0.52 < single.float().mean() < 0.60
    assert 0.16 < is_prefix.float().mean() < 0.22      # expansion with k = 2..4
    assert set((kept & single[:, None]).float().argmax(1)[single].tolist()) == set(range(9))
    assert kept.sum(1).max() <= 4 and masks.any(1).all() and kept.any(1).all()
    # Random masks come from `preserved`, as in mode "random".
    only_random = MaskSchedule(mode="tasks", preserved=(0.5, 0.5), tasks={"random": 1}).sample(100, 8, 0.0, rng)
    assert ((~only_random).sum(1) == 4).all()
    two = MaskSchedule(mode="tasks", tasks={"interpolation": 1, "expansion": 1}).sample(50, 2, 0.0, rng)
    assert two.any(1).all() and (~two).any(1).all()
    for bad, message in [({"mode": "tasks"}, "needs masks.tasks"),
                         ({"mode": "tasks", "tasks": {"inpainting": 1}}, "unknown task"),
                         ({"mode": "tasks", "tasks": {"interpolation": -1}}, "non-negative"),
                         ({"mode": "tasks", "tasks": {"interpolation": 0}}, "not all zero"),
                         ({"mode": "tasks", "tasks": {"random": 1}, "interpolation_share": 0.5}, "in masks.tasks"),
                         ({"tasks": {"random": 1}}, "only read in mode 'tasks'"),
                         ({"mode": "inpaint"}, "unknown mask mode")]:
        with pytest.raises(ValueError, match=message):
            MaskSchedule(**bad)


def test_loop_task_keeps_first_and_last_of_a_palindrome():
    from mardini.training.masking import palindrome

    rng = torch.Generator().manual_seed(0)
    schedule = MaskSchedule(mode="tasks", tasks={"interpolation": 1, "loop": 1, "image_to_video": 1})
    masks, loops = schedule.sample_with_loops(3000, 9, 0.0, rng)
    first_last = ~masks[:, 0] & ~masks[:, -1] & masks[:, 1:-1].all(1)
    assert 0.30 < loops.float().mean() < 0.37 and first_last[loops].all()
    assert 0.62 < first_last.float().mean() < 0.71  # interpolation and loop alike
    # Other modes and mixtures without the task draw no loop, and `sample` is the mask alone.
    assert not MaskSchedule(mode="tasks", tasks={"interpolation": 1}).sample_with_loops(50, 9, 0.0, rng)[1].any()
    assert not MaskSchedule(mode="interpolation").sample_with_loops(5, 9, 0.0, rng)[1].any()
    again = torch.Generator().manual_seed(0)
    assert torch.equal(schedule.sample(3000, 9, 0.0, again), masks)
    # Forward to the middle frame and back; clips not chosen are untouched.
    clips = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 9, 1, 1, 1).expand(2, 9, 3, 2, 2)
    out = palindrome(clips, torch.tensor([True, False]))
    assert out[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert torch.equal(out[1], clips[1])
    assert palindrome(clips[:, :8], torch.tensor([True, True]))[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3, 3, 2, 1, 0]


def test_loop_task_reaches_training_as_palindromes(monkeypatch, tmp_path, codec_dir):
    """The trainer plays loop clips forward and back before the loss sees them."""
    import mardini.training.trainer as trainer

    seen = []
    original = trainer.StageLoss.forward
    monkeypatch.setattr(trainer.StageLoss, "forward",
                        lambda self, z_high, z_low, generate, rng: seen.append((z_high, z_low, generate))
                        or original(self, z_high, z_low, generate, rng))
    cfg = _stage("stage2_joint_interpolation", codec_dir, "init=mardini-tiny", "steps=1",
                 "masks={mode: tasks, tasks: {loop: 1}}",
                 "checkpoint_every=1", "sample_every=0")
    train(cfg, tmp_path / "run", progress=False)
    z_high, z_low, generate = seen[0]
    assert (~generate[:, 0] & ~generate[:, -1] & generate[:, 1:-1].all(1)).all()
    assert torch.equal(z_high, z_high.flip(1)) and torch.equal(z_low, z_low.flip(1))


def test_bad_config_values_are_reported(tmp_path, codec_dir):
    with pytest.raises(ValueError, match="unknown field"):
        _stage("stage1a_generator", codec_dir, "optim.learning_rate=1")
    with pytest.raises(ValueError, match="key=value"):
        _stage("stage1a_generator", codec_dir, "steps")
    with pytest.raises(ValueError, match="precision"):
        _stage("stage1a_generator", codec_dir, "precision=fp16")
    with pytest.raises(ValueError, match="prior must be"):
        _stage("stage1a_generator", codec_dir, "prior=linear")


def _torchrun(tmp_path, run, *overrides):
    script = tmp_path / "launch.py"
    script.write_text("import sys\nfrom mardini.training import load_stage_config, train\n"
                      "train(load_stage_config(sys.argv[1], sys.argv[3:]), sys.argv[2], progress=False)\n")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A session of its own, so a hung run's workers can be killed with the launcher.
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={port}", str(script), str(CONFIGS / "stage2_joint_interpolation.yaml"), str(run),
         "init=mardini-tiny", *overrides], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, err[-3000:]


def test_two_process_torchrun_keeps_ranks_in_sync_on_different_data(tmp_path, codec_dir):
    run = tmp_path / "ddp"
    _torchrun(tmp_path, run, f"codec={codec_dir}", "log_data=true", "steps=3")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["rank_weight_spread"] == 0.0 for r in records)
    seen = [[tuple(c) for batch in (run / f"data_rank{r}.jsonl").read_text().splitlines() for c in json.loads(batch)]
            for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 6 and not set(seen[0]) & set(seen[1])
    # FSDP (sharded weights and optimiser state) trains the same model on the same data.
    _torchrun(tmp_path, tmp_path / "fsdp", f"codec={codec_dir}", "steps=3", "distributed=fsdp", "sample_every=3")
    assert (tmp_path / "fsdp" / "samples" / "step-0000003.gif").exists()  # sampling with sharded weights
    assert [r["step"] for r in _previews(tmp_path / "fsdp")] == [3]  # scored once, by rank 0
    ddp_weights = load_file(run / "checkpoints" / "step-0000003" / "training" / "weights.safetensors")
    fsdp_weights = load_file(tmp_path / "fsdp" / "checkpoints" / "step-0000003" / "training" / "weights.safetensors")
    assert ddp_weights.keys() == fsdp_weights.keys()
    for key in ddp_weights:
        torch.testing.assert_close(fsdp_weights[key], ddp_weights[key], rtol=1e-4, atol=1e-5, msg=key)
    # Both checkpoints load, and a 1-process run resumes from each.
    for name in ("ddp", "fsdp"):
        cfg = load_stage_config(CONFIGS / "stage2_joint_interpolation.yaml",
                                ["init=mardini-tiny", f"codec={codec_dir}", "steps=4"])
        # A different world size (and steps) must be allowed explicitly.
        assert train(cfg, tmp_path / name, resume=True, progress=False,
                     allow_config_change=True).name == "step-0000004"


def test_training_on_a_folder_with_a_broken_and_a_two_frame_video(tmp_path, codec_dir):
    from test_data import moving_frames, write_video

    from mardini.data import VideoSkippedWarning

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good.mp4", moving_frames(40, 64, 64))
    (videos / "broken.mp4").write_bytes(os.urandom(4096))
    write_video(videos / "two_frames.mp4", moving_frames(2, 64, 64))
    cfg = _stage("stage1a_generator", codec_dir, "steps=2", "checkpoint_every=100",
                 f"data={{kind: video_folder, path: {videos}, fps: 8, clips_per_epoch: 8}}")
    with pytest.warns(VideoSkippedWarning) as caught:
        checkpoint = train(cfg, tmp_path / "run", progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.mp4" in messages and "two_frames.mp4" in messages
    assert checkpoint.name == "step-0000002" and len(_losses(tmp_path / "run")) == 2


def test_cache_command_builds_a_cache_a_stage_trains_from(tmp_path, codec_dir):
    """`mardini cache` encodes a later stage's clips before its init exists (--model preset)."""
    from mardini.cli import main

    config = CONFIGS / "stage2_joint_interpolation.yaml"  # init: a run folder that does not exist here
    assert main(["cache", "--config", str(config), "--out", str(tmp_path / "cache"), "--model", "mardini-tiny",
                 "--codec", str(codec_dir), "--clips", "3", "--epochs", "2"]) == 0
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert len(index["items"]) == 6
    # The index says which part of every source the mixture's clips came from (never the held-out 20%).
    assert [p["time_range"] for p in index["dataset"]["parts"]] == [[0.0, 0.8], [0.0, 0.8]]
    # ... and what they were made from: the stage, its data spec as written, the codec folder.
    origin, stage = index["origin"], load_stage_config(config)
    assert origin["stage"] == stage.name and origin["data"] == stage.data and origin["frames"] == stage.frames
    assert origin["codec"] == str(Path(codec_dir).resolve()) and origin["seed"] == stage.seed
    cfg = _stage("stage2_joint_interpolation", codec_dir, "init=mardini-tiny", "steps=2", "batch_size=2",
                 f"data={{kind: latents, path: {tmp_path / 'cache'}}}")
    train(cfg, tmp_path / "run", progress=False)
    assert len(_losses(tmp_path / "run")) >= 1
    # a second build into the same folder is refused unless asked to overwrite
    assert main(["cache", "--config", str(config), "--out", str(tmp_path / "cache"), "--model", "mardini-tiny",
                 "--codec", str(codec_dir), "--clips", "1"]) == 2


def test_every_shipped_config_loads():
    """A typo in any config of configs/ (or its tiny copy) fails here, not hours into a run."""
    from mardini.training.vae import load_vae_config

    shipped = sorted(CONFIGS.parent.glob("*.yaml"))
    assert len(shipped) >= 9
    for path in shipped + sorted(CONFIGS.glob("*.yaml")):
        (load_vae_config if path.name.startswith("vae") else load_stage_config)(path)  # raises on any error
    # Every stage has its CI-sized copy, which the recipe test above trains in order.
    stages = {p.name for p in shipped if not p.name.startswith("vae")}
    assert stages == {p.name for p in CONFIGS.glob("*.yaml")} == {f"{name}.yaml" for name in STAGES}


def test_a_stage_trains_with_logit_normal_timesteps_and_resume_keeps_them(tmp_path, codec_dir, monkeypatch):
    """`timestep_sampling` reaches the loss (every draw goes through sample_timesteps) and is part of
    the run's recorded config, so resuming with another sampling is refused like any config change."""
    import mardini.diffusion.losses as losses

    seen = []
    original = losses.sample_timesteps

    def spy(*args, **kwargs):
        seen.append(args[2:5])
        return original(*args, **kwargs)

    monkeypatch.setattr(losses, "sample_timesteps", spy)
    overrides = ["steps=2", "batch_size=2", "log_every=1", "checkpoint_every=1", "sample_every=0",
                 "timestep_sampling=logit_normal", "timestep_mean=-0.5"]
    cfg = _stage("stage1a_generator", codec_dir, *overrides)
    train(cfg, tmp_path / "run", progress=False)
    assert seen and all(s == ("logit_normal", -0.5, 1.0) for s in seen)
    assert json.loads((tmp_path / "run" / "stage.json").read_text())["timestep_sampling"] == "logit_normal"
    with pytest.raises(TrainingError, match="timestep_sampling"):
        train(_stage("stage1a_generator", codec_dir, *overrides[:-2], "steps=3"), tmp_path / "run", resume=True,
              progress=False)


def test_a_stage_extends_another(tmp_path):
    """`extends:` lays a stage's values over another's: mappings key by key, a data spec of another
    kind or any other value replaces; each file's relative paths are read against its own folder."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text(
        "name: a\ninit: mardini-tiny\ntrain: joint\nsteps: 7\nbatch_size: 2\n"
        "optim: {lr: 1.0e-4, warmup_steps: 3}\nmasks: {mode: tasks, tasks: {interpolation: 1, image_to_video: 1}}\n"
        "data: {kind: mixture, parts: [{kind: latents, path: cache-a}, {kind: latents, path: cache-b}], weights: [1, 1]}\n")
    (tmp_path / "b.yaml").write_text("extends: base/a.yaml\nname: b\noptim: {lr: 2.0e-5}\n"
                                     "masks: {tasks: {loop: 2}}\ndata: {weights: [1, 5]}\n")
    (tmp_path / "c.yaml").write_text("extends: b.yaml\nsteps: 3\ndata: {kind: latents, path: mine}\n")
    b = load_stage_config(tmp_path / "b.yaml")
    assert (b.name, b.steps, b.batch_size, b.init) == ("b", 7, 2, "mardini-tiny")
    assert (b.optim.lr, b.optim.warmup_steps) == (2e-5, 3)
    assert b.masks.tasks == {"interpolation": 1, "image_to_video": 1, "loop": 2}
    assert b.data["weights"] == [1, 5]
    assert [part["path"] for part in b.data["parts"]] == [str((tmp_path / "base" / n).resolve()) for n in ("cache-a", "cache-b")]
    c = load_stage_config(tmp_path / "c.yaml", ["batch_size=4"])
    assert (c.name, c.steps, c.batch_size, c.optim.lr) == ("b", 3, 4, 2e-5)
    assert c.data == {"kind": "latents", "path": str((tmp_path / "mine").resolve())}
    # A missing parent and a cycle are named.
    (tmp_path / "d.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="'nowhere.yaml', which does not exist"):
        load_stage_config(tmp_path / "d.yaml")
    (tmp_path / "e.yaml").write_text("extends: f.yaml\n")
    (tmp_path / "f.yaml").write_text("extends: e.yaml\n")
    with pytest.raises(ValueError, match="extends it back"):
        load_stage_config(tmp_path / "e.yaml")


def test_the_corpus_stages_that_extend_read_as_their_full_copies_did():
    """stage6/7 of the corpus chain are written as changes to the stage before; what they load to is
    what the full files held when those stages were trained."""
    s5, s6, s7 = (load_stage_config(CONFIGS.parent / "corpus" / f"stage{n}_native_rate.yaml") for n in (5, 6, 7))
    assert (s6.steps, s6.optim.lr, s6.data["weights"]) == (2000, 3e-5, [1, 0.5, 3])
    assert (s7.steps, s7.optim.lr, s7.data["weights"]) == (1000, 3e-5, [1, 0.5, 7.5])
    for later in (s6, s7):
        assert later.masks == s5.masks and later.data["parts"] == s5.data["parts"]
        assert (later.optim.warmup_steps, later.optim.ema_decay, later.timestep_terminal_share) == (50, 0.998, 0.25)
    assert s7.init.endswith("runs/corpus-stage6") and s6.init.endswith("runs/corpus-stage5")
