"""Rotary positions and identity attention (sections 2.3.1 and 2.3.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mardini.models.layers import (apply_rope, dense_identity_mask, generated_token_index, identity_attention,
                                   rope_tables, split_head_dim)


def _score(q, k, q_pos, k_pos, axis_dims):
    positions = torch.tensor([q_pos, k_pos])
    cos, sin = rope_tables(positions, axis_dims)
    qr = apply_rope(q[None], cos[:1], sin[:1])
    kr = apply_rope(k[None], cos[1:], sin[1:])
    return (qr * kr).sum()


@pytest.mark.parametrize("axis_dims", [[8, 8], [8, 4, 4]])
def test_rope_scores_depend_only_on_relative_offsets(axis_dims):
    torch.manual_seed(0)
    q, k = torch.randn(sum(axis_dims)), torch.randn(sum(axis_dims))
    axes = len(axis_dims)
    base_q, base_k = [3, 5, 1][:axes], [1, 2, 7][:axes]
    reference = _score(q, k, base_q, base_k, axis_dims)
    for shift in ([4, 0, 0], [0, 9, 0], [2, 11, 5], [-1, -2, 3]):
        shifted = _score(q, k, [a + s for a, s in zip(base_q, shift)], [b + s for b, s in zip(base_k, shift)],
                         axis_dims)
        torch.testing.assert_close(shifted, reference, atol=1e-4, rtol=1e-4)
    # A different offset gives a different score: the test would fail for a position-blind rope.
    moved = _score(q, k, base_q, [b + 1 for b in base_k], axis_dims)
    assert not torch.isclose(moved, reference, atol=1e-3)


def test_rope_preserves_norm_and_split_head_dim():
    x = torch.randn(2, 3, 10, 16)
    cos, sin = rope_tables(torch.randint(0, 50, (10, 2)), [8, 8])
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
    assert split_head_dim(64, 3) == [24, 20, 20]
    assert split_head_dim(128, 2) == [64, 64]
    with pytest.raises(ValueError, match="too small"):
        split_head_dim(2, 3)


def _random_mask(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, length, generator=g) < 0.4


def test_identity_attention_equals_dense_masked_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 20, 8) for _ in range(3))
    mask = _random_mask(3, 20, 1)
    mask[1] = False  # a sequence with no generated token at all
    mask[2] = True   # and one with nothing but generated tokens
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_identity_mask(mask))
    torch.testing.assert_close(identity_attention(q, k, v, mask), dense, atol=1e-5, rtol=1e-5)


def test_reference_outputs_are_their_own_values_and_ignore_other_tokens():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 12, 8) for _ in range(3))
    mask = _random_mask(2, 12, 3)
    out = identity_attention(q, k, v, mask)
    ref = ~mask
    torch.testing.assert_close(out.transpose(1, 2)[ref], v.transpose(1, 2)[ref])
    # Perturb every other token: reference outputs are bit-identical, generated ones change.
    for b in range(2):
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        others = torch.ones(12, dtype=torch.bool)
        i = int(torch.nonzero(ref[b])[0])
        others[i] = False
        for t in (q2, k2, v2):
            t[b, :, others] += torch.randn_like(t[b, :, others])
        out2 = identity_attention(q2, k2, v2, mask)
        assert torch.equal(out2[b, :, i], out[b, :, i])
        assert not torch.allclose(out2[b].transpose(0, 1)[mask[b]], out[b].transpose(0, 1)[mask[b]])


def test_generated_token_index_pads_safely():
    mask = torch.tensor([[False, True, False, True], [False, False, False, False], [True, True, True, False]])
    gather, scatter = generated_token_index(mask)
    assert gather.shape == (3, 3)
    assert gather[0, :2].tolist() == [1, 3] and scatter[0].tolist() == [1, 3, 4]
    assert scatter[1].tolist() == [4, 4, 4]
    assert gather[2].tolist() == [0, 1, 2]


def test_identity_attention_rejects_mismatched_mask():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="token mask has shape"):
        identity_attention(q, q, q, torch.zeros(1, 6, dtype=torch.bool))
