"""Fixes from a read of the code against the paper (issue 15): the generator's attention pattern
and plan dropout defaults of fine-tuning stages, rotary caches under inference mode, identity
attention without a host sync."""

from __future__ import annotations

from pathlib import Path

import torch

from mardini import MarDini, get_preset
from mardini.checkpoint import save_checkpoint, untrained_codec
from mardini.models.layers import generated_token_index, identity_attention
from mardini.training import load_stage_config
from mardini.training.trainer import _build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tiny"


def test_a_stage_without_generator_attention_keeps_the_checkpoints(tmp_path):
    config = get_preset("mardini-tiny")
    config.generator.attention = "temporal"
    torch.manual_seed(0)
    model = MarDini(config)
    save_checkpoint(model, untrained_codec(config), tmp_path / "temporal")
    cfg = load_stage_config(CONFIGS / "stage3_joint_task.yaml", [f"init={tmp_path / 'temporal'}",
                                                                  "generator_attention=null"])
    kept, _, _ = _build_model(cfg)
    assert kept.generator.attention == kept.config.generator.attention == "temporal"
    switched, _, _ = _build_model(load_stage_config(CONFIGS / "stage3_joint_task.yaml",
                                                    [f"init={tmp_path / 'temporal'}",
                                                     "generator_attention=spatiotemporal"]))
    assert switched.config.generator.attention == "spatiotemporal"


def test_joint_stages_train_the_unconditional_token_by_default():
    joint = load_stage_config(CONFIGS / "stage3_joint_task.yaml", ["plan_dropout=null", "init=mardini-tiny"])
    assert joint.plan_dropout == 0.1
    generator = load_stage_config(CONFIGS / "stage1a_generator.yaml", ["plan_dropout=null", "codec=x"])
    assert generator.plan_dropout == 0.0
    assert load_stage_config(CONFIGS / "stage3_joint_task.yaml", ["plan_dropout=0.0", "init=mardini-tiny"]
                             ).plan_dropout == 0.0  # an explicit 0 stays


def test_a_training_step_after_sampling_under_inference_mode():
    torch.manual_seed(0)
    model = MarDini(get_preset("mardini-tiny"))
    z = torch.randn(1, 5, 16, 8, 8)
    generate = torch.tensor([[False, True, True, True, True]])
    with torch.inference_mode():
        model.generator(z, torch.tensor([10]), generate, None)
    out = model.generator(z, torch.tensor([10]), generate, None)  # the same grid: the cached tables
    out.square().mean().backward()
    assert any(p.grad is not None for p in model.generator.parameters())


def test_identity_attention_needs_no_host_sync_and_padding_changes_nothing():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    mask = torch.tensor([[True] * 4 + [False] * 6, [False, True] * 5])
    compact = identity_attention(q, k, v, mask)  # the CPU path: padded to the largest count (5)
    assert generated_token_index(mask)[0].shape == (2, 5)
    padded = identity_attention(q, k, v, mask, width=10)  # what an accelerator runs: static shapes
    # Equal up to float rounding: the attention kernel may block a longer (padded) row differently
    # on another CPU (bit-equal on the AMD EPYC VM, 1-ulp differences on an Intel Xeon one).
    torch.testing.assert_close(compact, padded, rtol=0, atol=1e-6)
    # On a device other than the CPU nothing reads the count on the host: meta tensors, which have
    # no values to read, go through.
    meta = identity_attention(*(t.to("meta") for t in (q, k, v)), mask.to("meta"))
    assert meta.shape == q.shape
