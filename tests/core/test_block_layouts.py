"""The block's two layouts (``backbone.block_core``) give the same results:
one token tensor, and two streams (decoupled attention, large blocks)."""
import pytest
import torch

import mmship.core.backbone as backbone
from tiny import count_calls, pretrain_pair, seg_pair

D = 32
SHIP = dict(type='SHIPPrompter', starts=[0, 2, 3], num_tokens=3, ssp_tokens=2,
            ap_groups=2, ap_tokens=2, pml_tokens=3, dropout=0.0)
DECOUPLED = {
    'ship-attend': SHIP,
    'ship-bypass': dict(SHIP, prompt_update='bypass'),
    'vpt-mix': dict(type='Prompter', dropout=0.0, placements=[
        dict(kind='shallow', num_tokens=2), dict(kind='deep', num_tokens=3),
        dict(kind='shared', num_tokens=2),
        dict(kind='group', num_tokens=2, starts=[0, 2])],
        attention=dict(decoupled=True, lambda_d=0.3)),
}


def _step(pair, prompt, min_tokens, monkeypatch, compile_blocks=False,
          dtype=torch.float64):
    """Features, losses, gradients of one training step, and how many
    blocks ran as two streams."""
    monkeypatch.setattr(backbone, 'STREAMS_MIN_TOKENS', min_tokens)
    calls = count_calls(monkeypatch, backbone, '_two_streams')
    torch.manual_seed(0)
    if prompt['type'] == 'SHIPPrompter':
        prompt = dict(prompt, prototypes=torch.randn(5, D))
    _, twin = pair(prompt=prompt, compile_blocks=compile_blocks)
    twin = twin.to(dtype).train()
    with torch.no_grad():
        for p in twin.prompter.parameters():
            p.add_(0.1 * torch.randn_like(p))
    img = torch.randn(2, 3, 32, 32, dtype=dtype, requires_grad=True)
    feats, losses = twin.forward_with_losses(img)
    feats = [f for o in feats
             for f in (o if isinstance(o, (list, tuple)) else [o])]
    (sum(f.pow(2).mean() for f in feats) + sum(losses.values(),
                                               img.new_zeros(()))).backward()
    grads = [img.grad] + [p.grad for p in twin.prompter.parameters()]
    return feats, losses, grads, len(calls)


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
@pytest.mark.parametrize('prompt', list(DECOUPLED))
def test_two_streams_equal_one_token_tensor(pair, prompt, monkeypatch):
    joint = _step(pair, DECOUPLED[prompt], 10**9, monkeypatch)
    streams = _step(pair, DECOUPLED[prompt], 0, monkeypatch)
    assert joint[3] == 0 and streams[3] > 0   # each layout really ran
    for a, b in zip(joint[0], streams[0]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)
    assert joint[1].keys() == streams[1].keys()
    for k in joint[1]:
        torch.testing.assert_close(joint[1][k], streams[1][k], atol=1e-10,
                                   rtol=1e-9)
    for a, b in zip(joint[2], streams[2]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_coupled_attention_always_runs_on_one_token_tensor(monkeypatch):
    coupled = dict(DECOUPLED['vpt-mix'], attention=dict(decoupled=False))
    assert _step(seg_pair, coupled, 0, monkeypatch)[3] == 0


def test_compiled_two_streams_equal_eager(monkeypatch):
    """fp32, as the contract suite's compiled test (inductor's CPU kernels
    are built for the default dtype)."""
    eager = _step(seg_pair, SHIP, 0, monkeypatch, dtype=torch.float32)
    compiled = _step(seg_pair, SHIP, 0, monkeypatch, compile_blocks=True,
                     dtype=torch.float32)
    assert compiled[3] > 0
    for a, b in zip(eager[0] + list(eager[1].values()),
                    compiled[0] + list(compiled[1].values())):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(eager[2], compiled[2]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
