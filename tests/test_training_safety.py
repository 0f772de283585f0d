"""Long-run safety of training (issue 15): run folders, divergence, checkpoint writes, resume checks, signals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mardini.training import TrainingError, load_stage_config, train
from mardini.training import state as state_module
from mardini.training.state import list_checkpoints

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tiny"


def _cfg(codec_dir, *overrides):
    return load_stage_config(CONFIGS / "stage1a_generator.yaml",
                             [f"codec={codec_dir}", "sample_every=0", *overrides])


def _metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def test_a_run_folder_with_a_run_needs_resume_or_overwrite(tmp_path, codec_dir):
    cfg = _cfg(codec_dir, "steps=2", "checkpoint_every=1")
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    with pytest.raises(TrainingError, match="not empty.*--resume.*--overwrite"):
        train(cfg, run, progress=False)
    assert len(_metrics(run)) == 2  # the refused run wrote nothing
    (run / "notes.txt").write_text("mine")
    train(cfg, run, progress=False, overwrite=True)
    assert len(_metrics(run)) == 2 and (run / "notes.txt").read_text() == "mine"  # only the run's own files go
    assert [p.name for p in list_checkpoints(run)] == ["step-0000001", "step-0000002"]
    with pytest.raises(TrainingError, match="'.*missing' does not exist; drop --resume"):
        train(cfg, tmp_path / "missing", resume=True, progress=False)


@pytest.mark.parametrize("lr", ["1e6", "1e30"])
def test_a_diverging_run_stops_before_saving_diverged_weights(tmp_path, codec_dir, lr):
    cfg = _cfg(codec_dir, "steps=30", "checkpoint_every=1", "keep_checkpoints=100", f"optim.lr={lr}",
               "optim.warmup_steps=1")
    init = {k: v.clone() for k, v in _initial_weights(cfg).items()}
    with pytest.raises(TrainingError, match="diverged|became"):
        train(cfg, tmp_path / "run", progress=False)
    # Every checkpoint holds weights of the initial scale, not merely finite ones.
    scale = max(float(v.abs().max()) for v in init.values())
    for checkpoint in list_checkpoints(tmp_path / "run"):
        for file in ("training/weights.safetensors", "model.safetensors"):
            weights = load_file(checkpoint / file)
            largest = max(float(v.abs().max()) for v in weights.values() if v.is_floating_point())
            assert largest < 10 * scale + 1, (checkpoint.name, file, largest)


def test_the_divergence_check_reads_a_log_weighted_loss_on_the_log_scale(codec_dir):
    from collections import deque

    from mardini.training.trainer import check_divergence

    history = deque([-3.0, -2.5, -2.0])  # a log-weighted loss: negative, median -2.5
    for weighting in ("log", "log_inbetweens"):
        cfg = _cfg(codec_dir, f"clip_weighting={weighting}", "divergence_factor=100")
        check_divergence(5, -2.5 + 4.5, 1.0, history, cfg)  # the error 90x its level: still training
        with pytest.raises(TrainingError, match=r"log\(100\).*error grew more than 100x.*divergence_factor"):
            check_divergence(5, -2.5 + 4.7, 1.0, history, cfg)  # 110x
        check_divergence(5, 50.0, 1.0, history, _cfg(codec_dir, f"clip_weighting={weighting}",
                                                     "divergence_factor=0"))  # 0 turns it off
    # The plain mean over elements keeps the ratio.
    cfg = _cfg(codec_dir, "divergence_factor=100")
    plain = deque([0.02, 0.03, 0.04])
    check_divergence(5, 2.9, 1.0, plain, cfg)
    with pytest.raises(TrainingError, match="more than 100x its running level 0.03"):
        check_divergence(5, 3.1, 1.0, plain, cfg)


def _initial_weights(cfg):
    from mardini.models import MarDini
    from mardini.config import get_preset

    torch.manual_seed(cfg.seed)
    return MarDini(get_preset(cfg.init)).state_dict()


def test_no_step_is_written_twice_and_stale_folders_go(tmp_path, codec_dir, monkeypatch):
    written = []
    original = state_module.write_checkpoint

    def recording(run_dir, step, *args, **kwargs):
        written.append(step)
        return original(run_dir, step, *args, **kwargs)

    monkeypatch.setattr("mardini.training.trainer.write_checkpoint", recording)
    cfg = _cfg(codec_dir, "steps=2", "checkpoint_every=2")
    run = tmp_path / "run"
    last = train(cfg, run, progress=False)
    assert written == [2]
    (run / "checkpoints" / "step-0000003.tmp").mkdir()  # left by a killed run
    assert train(cfg, run, resume=True, progress=False) == last  # nothing left to do: nothing written
    assert written == [2] and not (run / "checkpoints" / "step-0000003.tmp").exists()


def test_replacing_a_checkpoint_never_leaves_none(tmp_path, codec_dir, monkeypatch):
    cfg = _cfg(codec_dir, "steps=1", "checkpoint_every=1")
    run = tmp_path / "run"
    final = train(cfg, run, progress=False)
    state = state_module.read_training_state(final)
    from mardini.checkpoint import load_model

    model = load_model(final)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError("killed here")
        return real_replace(src, dst)

    monkeypatch.setattr(state_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="killed here"):
        state_module.write_checkpoint(run, 1, model, state["weights"], state["ema"], {"state": {}, "param_groups": []},
                                      final / "codec", {}, keep=2)
    monkeypatch.undo()
    # The complete step-1 is still there (or moved aside to step-1.old, never deleted first).
    survivors = [p for p in (run / "checkpoints").iterdir() if (p / "training" / "state.json").is_file()
                 and p.name.startswith("step-0000001")]
    assert survivors, list((run / "checkpoints").iterdir())


def test_resume_refuses_a_changed_setup_unless_allowed(tmp_path, codec_dir):
    run = tmp_path / "run"
    train(_cfg(codec_dir, "steps=4", "checkpoint_every=2"), run, max_steps=2, progress=False)
    changed = _cfg(codec_dir, "steps=4", "checkpoint_every=2", "seed=1", "batch_size=1")
    with pytest.raises(TrainingError, match=r"batch_size: 2 -> 1; seed: 0 -> 1.*--allow-config-change"):
        train(changed, run, resume=True, progress=False)
    # Bookkeeping fields may change freely.
    train(_cfg(codec_dir, "steps=4", "checkpoint_every=2", "log_every=2"), run, resume=True, max_steps=3,
          progress=False)
    assert train(changed, run, resume=True, progress=False, allow_config_change=True).name == "step-0000004"


def test_train_vae_guards_its_run_folder_writes_each_step_once_and_exits_75_on_a_signal(tmp_path, monkeypatch):
    import signal

    from mardini.training import PREEMPTED_EXIT_CODE, TrainingInterrupted
    from mardini.training import vae
    from test_vae_training import tiny_config

    saved = []
    real_save = vae._save
    monkeypatch.setattr(vae, "_save", lambda run_dir, step, *a: saved.append(step) or real_save(run_dir, step, *a))
    run = tmp_path / "vae"
    vae.train_vae(tiny_config(), run, progress=False)
    assert saved == [2, 4]  # the last step (a checkpoint step) is written once
    with pytest.raises(TrainingError, match="not empty"):
        vae.train_vae(tiny_config(), run, progress=False)
    real_ssim = vae.ssim_loss
    calls = []

    def signalled(*args):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler preempting the job
        return real_ssim(*args)

    monkeypatch.setattr(vae, "ssim_loss", signalled)
    with pytest.raises(TrainingInterrupted) as stopped:
        vae.train_vae(tiny_config(), run, progress=False, overwrite=True)
    assert stopped.value.code == PREEMPTED_EXIT_CODE == 75 and stopped.value.step == 1
    assert [p.name for p in list_checkpoints(run)] == ["step-0000001"]


def test_the_train_command_refuses_a_used_folder_in_one_line(tmp_path, codec_dir, capsys):
    from mardini.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    args = ["--config", str(CONFIGS / "stage1a_generator.yaml"), "--override", f"codec={codec_dir}", "--quiet"]
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == 2
    assert "is not empty; continue its run with --resume, delete it with --overwrite" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "missing"), "--resume", *args]) == 2
    assert "does not exist; drop --resume" in capsys.readouterr().err
    assert main(["train-vae", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
