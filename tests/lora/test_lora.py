"""LoRA through the method contract: identity at init, the low-rank side
path equals the dense delta, only q and v change, sizes and errors."""
import pytest
import torch

from tiny import PRETRAIN_ARGS, pretrain_pair, seg_pair

D = 32


def lora(**kw):
    return dict(type='LoRA', rank=2, alpha=4.0, **kw)


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_starts_as_the_frozen_host(pair):
    host, twin = pair(prompt=lora())
    img = torch.randn(2, 3, 32, 32)
    for x, y in zip(host(img), twin(img)):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-6)


def test_side_path_equals_the_dense_delta_on_q_and_v_only():
    _, twin = pretrain_pair(prompt=lora())
    method = twin.prompter
    torch.manual_seed(0)
    with torch.no_grad():
        for p in method.up.values():
            p.normal_()
    x = torch.randn(2, 5, D)
    ops = twin._block_ops[1]
    qkv = ops.layer.attn.qkv
    q, k, v = ops.qkv(x, method.block_deltas(1))
    down, up = method.down['1'], method.up['1']           # (2r, D), (2, D, r)
    r = method.rank
    dense = torch.zeros(3 * D, D)
    dense[:D] = up[0] @ down[:r]
    dense[2 * D:] = up[1] @ down[r:]
    want = torch.nn.functional.linear(x, qkv.weight + 2.0 * dense, qkv.bias)
    q0, k0, v0 = ops._split_heads(want)
    torch.testing.assert_close(q, q0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v, v0, atol=1e-5, rtol=1e-5)
    plain_k = ops._split_heads(qkv(x))[1]
    torch.testing.assert_close(k, plain_k)


def test_parameter_count_and_targets():
    _, twin = seg_pair(prompt=lora(targets=['v'], blocks=[1, 3]))
    method = twin.prompter
    assert sum(p.numel() for p in method.parameters()) == 2 * (2 * D + D * 2)
    assert method.block_deltas(0) == {}
    _, full = seg_pair(prompt=lora())
    # q and v, rank 2, 4 blocks: 4 * 2 * (r D + D r)
    assert sum(p.numel() for p in full.prompter.parameters()) == \
        4 * 2 * 2 * 2 * D
    assert 'rank=2' in repr(full.prompter)


@pytest.mark.parametrize('kw,match', [
    (dict(rank=0), 'rank must be >= 1'),
    (dict(targets=['q', 'o']), 'non-empty subset'),
    (dict(targets=[]), 'non-empty subset'),
    (dict(blocks=[7]), 'block.*7.*do not exist'),
])
def test_bad_arguments_are_clear(kw, match):
    cfg = dict(type='LoRA', **kw)
    with pytest.raises(ValueError, match=match):
        pretrain_pair(prompt=cfg, args=PRETRAIN_ARGS)
