"""SHIPPrompter on tiny hosts: placements, AP, PML, DA, switches, errors."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mmship.core.backbone as engine
from mmship.core.method import BlockPlan, BlockSpec
from mmship.core.prompts import Carry, Insert
from mmship.ship.method import (AttributePrompts, attribute_mixture,
                                  prompt_matching_loss)
from tiny import count_calls, pretrain_pair, seg_pair

D = 32          # tiny embed dims
PATCHES = 16    # 32x32 image, patch 8
STARTS = [0, 2, 3]


def ship(**kw):
    cfg = dict(type='SHIPPrompter', starts=STARTS, num_tokens=3,
               ssp_tokens=2, ap_groups=2, ap_tokens=2, pml_tokens=3,
               prototypes=torch.randn(5, D), tau=0.5)
    cfg.update(kw)
    return cfg


ABLATION = {
    'sip': dict(decoupled=False, ssp=False, ap=False, pml=False,
                prototypes=None),
    '+da': dict(ssp=False, ap=False, pml=False, prototypes=None),
    '+ssp': dict(ap=False, pml=False, prototypes=None),
    '+ap': dict(pml=False),
    '+pml': dict(),
}


def _record_prompts(prompter):
    """Wrap block_prompts: {block: {source: tensor}} of the last forward."""
    seen = {}
    orig = prompter.block_prompts

    def spy(block, ctx, x, carried):
        out = orig(block, ctx, x, carried)
        seen[block] = dict(out)
        return out

    prompter.block_prompts = spy
    return seen


# -- placements ---------------------------------------------------------------
def test_sip_inserted_and_dropped_exactly_at_group_starts():
    _, twin = seg_pair(prompt=ship(**ABLATION['sip']))
    p = twin.prompter
    assert p.schedule == [[Insert('sip_0')], [Carry('sip_0')],
                          [Insert('sip_2')], [Insert('sip_3')]]
    assert p.num_prompts == [3, 3, 3, 3]
    seen = _record_prompts(p)
    twin(torch.randn(2, 3, 32, 32))
    assert [list(seen[b]) for b in range(4)] == \
        [['sip_0'], ['sip_0'], ['sip_2'], ['sip_3']]
    for start in (0, 2, 3):   # inserted: the parameters themselves (eval)
        torch.testing.assert_close(
            seen[start][f'sip_{start}'],
            p.sources[f'sip_{start}'].tokens.expand(2, -1, -1))
    # carried into block 1: the outputs of block 0, not the parameters
    assert not torch.allclose(seen[1]['sip_0'], seen[0]['sip_0'], atol=1e-3)


def test_ssp_is_reinserted_at_every_block():
    _, twin = pretrain_pair(prompt=ship(**ABLATION['+ssp']))
    p = twin.prompter
    assert all(Insert('ssp') in steps for steps in p.schedule)
    seen = _record_prompts(p)
    twin(torch.randn(2, 3, 32, 32))
    for b in range(4):
        torch.testing.assert_close(seen[b]['ssp'],
                                   p.sources['ssp'].tokens.expand(2, -1, -1))
    assert p.num_prompts == [5, 5, 5, 5]


def test_ap_placed_at_the_last_group_starts_and_carried():
    _, twin = seg_pair(prompt=ship(starts=[0, 1, 3], ap_groups=2))
    p = twin.prompter
    assert p.ap_starts == [1, 3]
    assert [s for s in p.schedule[1] if 'ap' in s.source] == [Insert('ap_1')]
    assert [s for s in p.schedule[2] if 'ap' in s.source] == [Carry('ap_1')]
    assert [s for s in p.schedule[3] if 'ap' in s.source] == [Insert('ap_3')]
    assert not [s for s in p.schedule[0] if 'ap' in s.source]
    # CLS attention is recorded before each AP start; PML's only in training
    assert [s.record_cls_attention for s in p.specs(training=False)] == \
        [True, False, True, False]
    assert [s.record_cls_attention for s in p.specs(training=True)] == \
        [True, False, True, True]


# -- attribute prompts --------------------------------------------------------
def test_attribute_prompts_use_the_most_attended_patches():
    torch.manual_seed(0)
    ap = AttributePrompts(2, D, 8, lambda_a=0.3, tau=0.2).eval()
    x = torch.randn(2, 1 + 6, D)
    cls_attn = torch.tensor([[.10, .05, .40, .05, .30, .10],
                             [.50, .10, .10, .05, .05, .20]])
    A = torch.randn(4, D)
    out = ap(x, cls_attn, A)
    assert out.shape == (2, 2, D)
    # patches 2 and 4 (instance tokens 3, 5); patches 0 and 5 (tokens 1, 6)
    z = torch.stack([x[0, [3, 5]], x[1, [1, 6]]])
    w = torch.zeros(2, 2, 4)
    for b in range(2):
        for i in range(2):
            for k in range(4):
                w[b, i, k] = F.cosine_similarity(z[b, i], A[k], dim=0) / 0.2
    mix = w.softmax(-1) @ A
    want = 0.7 * ap.tokens.detach() + 0.3 * mix
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    # another choice of patches gives another result
    z_wrong = torch.stack([x[0, [0, 1]], x[1, [0, 2]]])
    assert not torch.allclose(
        out, 0.7 * ap.tokens.detach() + 0.3 * attribute_mixture(z_wrong, A,
                                                                0.2),
        atol=1e-4)


def test_ap_in_a_forward_gets_the_previous_blocks_attention_and_grads():
    _, twin = seg_pair(prompt=ship(pml=False))
    p = twin.prompter
    calls = []
    orig = AttributePrompts.forward

    def spy(self, x, cls_attn, prototypes):
        out = orig(self, x, cls_attn, prototypes)
        calls.append((x, cls_attn, out))
        return out

    blocks = {}
    orig_after = p.after_block

    def after_spy(block, ctx, result):
        blocks[block] = result
        return orig_after(block, ctx, result)

    p.after_block = after_spy
    AttributePrompts.forward = spy
    try:
        twin.train()
        outs = twin(torch.randn(2, 3, 32, 32))
    finally:
        AttributePrompts.forward = orig
    assert len(calls) == 2                      # blocks 2 and 3
    for (x, cls_attn, out), start in zip(calls, p.ap_starts):
        assert out.shape == (2, 2, D)
        assert cls_attn.shape == (2, PATCHES)   # patches only, probabilities
        assert (cls_attn > 0).all() and (cls_attn.sum(1) < 1).all()
        # ranks patches only: no graph keeps the fp32 keys alive
        assert not cls_attn.requires_grad and x.requires_grad
        torch.testing.assert_close(x, blocks[start].x_in)
        # the CLS attention (I2I softmax, mean over heads) of block start-1
        ops, before = twin._block_ops[start - 1], blocks[start - 1]
        tokens = torch.cat([before.x_in] + list(before.prompts_in.values()),
                           1)
        q, k, _ = ops.qkv(ops.norm1(tokens), {})
        want = torch.einsum('bhd,bhnd->bhn', q[:, :, 0],
                            k[:, :, :1 + PATCHES]) / math.sqrt(q.shape[-1])
        want = want.softmax(-1).mean(1)[:, 1:]
        torch.testing.assert_close(cls_attn, want, atol=1e-5, rtol=1e-4)
    sum(o.sum() for o in outs).backward()
    for s in p.ap_starts:
        grad = p.sources[f'ap_{s}'].tokens.grad
        assert grad is not None and grad.abs().sum() > 0


def test_attribute_mixture_is_nearly_uniform_at_tau_one():
    # the reference's tau=1 over many prototypes: the mixture barely depends
    # on z; a small tau makes it follow z.
    torch.manual_seed(0)
    A = torch.randn(200, 64)
    z = torch.randn(1, 2, 64)
    flat = attribute_mixture(z, A, 1.0)
    sharp = attribute_mixture(z, A, 0.05)
    spread = lambda m: (m[0, 0] - m[0, 1]).norm() / A.mean(0).norm()  # noqa
    assert spread(sharp) > 5 * spread(flat)


# -- prompt matching loss -----------------------------------------------------
def test_pml_by_hand():
    p = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    z = torch.tensor([[[3.0, 0.0], [1.0, 1.0]]])
    want = (0.0 + (1.0 - 1.0 / math.sqrt(2.0))) / 2
    assert prompt_matching_loss(p, z).item() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_pml_in_a_forward_equals_a_hand_computation(pair):
    _, twin = pair(prompt=ship(pml_tokens=3, lambda_m=0.5))
    p = twin.prompter
    captured = {}
    orig = p.after_block

    def spy(block, ctx, result):
        if block == 3:
            captured.update(ops=twin._block_ops[3], x_in=result.x_in,
                            prompts_in=result.prompts_in, x_out=result.x_out,
                            prompts_out=result.prompts_out)
        return orig(block, ctx, result)

    p.after_block = spy
    twin.train()
    _, losses = twin.forward_with_losses(torch.randn(2, 3, 32, 32))
    assert set(losses) == {'loss_pml'}

    # CLS attention of block 3 from scratch: with decoupled attention the
    # CLS query's (I2I) softmax runs over the instance keys
    ops = captured['ops']
    tokens = torch.cat([captured['x_in']] + list(
        captured['prompts_in'].values()), 1)
    q, k, _ = ops.qkv(ops.norm1(tokens), {})
    attn = torch.einsum('bhd,bhnd->bhn', q[:, :, 0], k[:, :, :1 + PATCHES])
    attn = (attn / math.sqrt(q.shape[-1])).softmax(-1).mean(1)
    top = attn[:, 1:1 + PATCHES].topk(3, dim=1).indices + 1
    prompts = torch.cat(list(captured['prompts_out'].values()), 1)
    assert prompts.shape[1] == 3 + 2 + 2      # SIP + SSP + AP of block 3
    total = 0.0
    for b in range(2):
        for i in range(prompts.shape[1]):
            total += min(1 - F.cosine_similarity(
                prompts[b, i], captured['x_out'][b, j], dim=0)
                for j in top[b].tolist())
    want = 0.5 * total / (2 * prompts.shape[1])
    torch.testing.assert_close(losses['loss_pml'], want.detach(), atol=1e-5,
                               rtol=1e-5)


def test_pml_absent_at_inference(monkeypatch):
    _, twin = seg_pair(prompt=ship(ap=False, prototypes=None))
    calls = count_calls(monkeypatch, engine, 'cls_attention')
    twin.eval()
    _, losses = twin.forward_with_losses(torch.randn(2, 3, 32, 32))
    assert losses == {} and calls == []      # no loss, no extra compute
    twin.train()
    _, losses = twin.forward_with_losses(torch.randn(2, 3, 32, 32))
    assert set(losses) == {'loss_pml'} and len(calls) == 1


def test_pml_switch_off():
    _, twin = seg_pair(prompt=ship(pml=False))
    twin.train()
    _, losses = twin.forward_with_losses(torch.randn(2, 3, 32, 32))
    assert losses == {}


# -- decoupled attention ------------------------------------------------------
@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_zero_lambda_d_leaves_instances_equal_to_the_frozen_backbone(pair):
    host, twin = pair(prompt=ship(lambda_d=0.0))
    img = torch.randn(2, 3, 32, 32)
    for mode in ('eval', 'train'):
        getattr(twin, mode)()
        for a, b in zip(host(img), twin(img)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    twin.prompter.attention.lambda_d = 0.1
    twin.eval()
    assert not torch.allclose(host(img)[-1], twin(img)[-1], atol=1e-4)


def test_coupled_attention_for_the_sip_row():
    _, twin = seg_pair(prompt=ship(**ABLATION['sip']))
    assert not twin.prompter.attention.decoupled
    _, twin = seg_pair(prompt=ship(**ABLATION['+da']))
    assert twin.prompter.attention.decoupled
    assert twin.prompter.attention.lambda_d == 0.1


# -- the whole method: every trainable parameter reaches the loss -------------
@pytest.mark.parametrize('row', list(ABLATION))
@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_no_unused_parameters(pair, row):
    _, twin = pair(prompt=ship(**ABLATION[row]))
    twin.train()
    outs, losses = twin.forward_with_losses(torch.randn(2, 3, 32, 32))
    loss = sum(o.float().pow(2).mean() for o in outs) + \
        sum(losses.values(), torch.zeros(()))
    loss.backward()
    trainable = [(n, q) for n, q in twin.named_parameters() if q.requires_grad]
    assert trainable and all(n.startswith('prompter.') for n, _ in trainable)
    unused = [n for n, q in trainable
              if q.grad is None or q.grad.abs().sum() == 0]
    assert unused == []
    names = {n for n, _ in trainable}
    assert any('ap_' in n for n in names) == (row in ('+ap', '+pml'))
    assert any('ssp' in n for n in names) == (row not in ('sip', '+da'))


def test_other_image_sizes_and_patch_counts():
    _, twin = seg_pair(prompt=ship())
    twin.train()
    outs, losses = twin.forward_with_losses(torch.randn(1, 3, 48, 40))
    assert outs[-1].shape[-2:] == (6, 5) and 'loss_pml' in losses


def test_prototypes_buffer_files_and_checkpoints(tmp_path):
    A = torch.randn(6, D)
    np.save(tmp_path / 'a.npy', A.numpy())
    torch.save(dict(prototypes=A, k=6), tmp_path / 'a.pth')
    for f in ('a.npy', 'a.pth'):
        _, twin = seg_pair(prompt=ship(prototypes=str(tmp_path / f)))
        torch.testing.assert_close(twin.prompter.prototypes, A)
    state = twin.state_dict()
    assert 'prompter.prototypes' in state
    assert 'prompter.prototypes' not in dict(twin.named_parameters())
    # an empty buffer of the right size, filled from a checkpoint
    _, empty = seg_pair(prompt=ship(prototypes=6))
    empty.train()
    with pytest.raises(RuntimeError, match='all zero'):
        empty(torch.randn(1, 3, 32, 32))
    empty.load_state_dict(state)
    torch.testing.assert_close(empty.prompter.prototypes, A)
    empty(torch.randn(1, 3, 32, 32))


def test_starts_from_a_hierarchy_file(tmp_path):
    path = tmp_path / 'hierarchy.json'
    path.write_text('{"starts": [0, 1, 3], "threshold": 0.95}')
    _, twin = seg_pair(prompt=ship(starts=str(path)))
    assert twin.prompter.starts == [0, 1, 3]
    assert twin.prompter.ap_starts == [1, 3]


# -- bad input ----------------------------------------------------------------
@pytest.mark.parametrize('kw, err, msg', [
    (dict(starts=[0, 2, 2]), ValueError, 'strictly increasing'),
    (dict(starts=[0, 3, 1]), ValueError, 'strictly increasing'),
    (dict(starts=[0, 2, 4]), ValueError, 'outside the backbone'),
    (dict(starts=[1, 2, 3]), ValueError, 'begin with block 0'),
    (dict(prototypes=torch.randn(5, 16)), ValueError, '16-dim.*32-dim'),
    (dict(prototypes=torch.randn(5)), ValueError, r'\(K, D\)'),
    (dict(starts=[0, 2], ap_groups=2), ValueError,
     'at least 3 groups.*has 2'),
    (dict(ap_groups=3), ValueError, 'at least 4 groups'),
    (dict(tau=0.0), ValueError, 'tau'),
    (dict(prompt_update='skip'), ValueError, 'prompt_update'),
    (dict(ap=False), ValueError, 'ap=False'),
    (dict(pml_block=4), ValueError, r'block\(s\) \[4\]'),
    (dict(sip=False, ssp=False, ap=False, prototypes=None, pml_block=0),
     ValueError, 'no prompts'),
])
def test_bad_input(kw, err, msg):
    with pytest.raises(err, match=msg):
        seg_pair(prompt=ship(**kw))


def test_ap_and_pml_need_a_cls_token():
    with pytest.raises(ValueError, match='with_cls_token=True'):
        seg_pair(prompt=ship(), with_cls_token=False)
    # SIP + SSP alone do not
    seg_pair(prompt=ship(**ABLATION['+ssp']), with_cls_token=False)


def test_too_few_patches_for_ap():
    _, twin = seg_pair(prompt=ship(ap_tokens=17))
    with pytest.raises(ValueError, match='top 17 patches.*16 patches'):
        twin(torch.randn(1, 3, 32, 32))


# -- prompt update outside the PML block --------------------------------------
def _run_block(ops, x, prompts, attention):
    """One block with one kept prompt set: (instance, prompt outputs)."""
    plan = BlockPlan(BlockSpec(attention, kept=('p', )), {'p': prompts})
    x_out, p_out, _, _ = engine.prompted_block(ops, x, plan)
    return x_out, p_out['p']


def _block_prompt_outputs(twin, block, x, prompts):
    return _run_block(twin._block_ops[block], x, prompts,
                      twin.prompter.block_attention(block))[1]


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_bypass_prompts_do_not_see_instances_outside_the_pml_block(pair):
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 1 + PATCHES, D), torch.randn(2, 1 + PATCHES, D)
    prompts = torch.randn(2, 4, D)
    _, bypass = pair(prompt=ship(prompt_update='bypass'))
    _, attend = pair(prompt=ship())
    attend.load_state_dict(bypass.state_dict())
    assert bypass.prompter.pml_block == 3
    for block in (0, 1, 2):  # not the PML block
        a = _block_prompt_outputs(bypass, block, x1, prompts)
        b = _block_prompt_outputs(bypass, block, x2, prompts)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        # the reference's update: p + proj(LN1(p)), then the FFN residual
        ops = bypass._block_ops[block]
        h = ops.norm1(prompts)
        heads = h.reshape(2, 4, ops.num_heads, -1).transpose(1, 2)
        want = ops.ffn_residual(ops.attn_residual(prompts, heads, {}))
        torch.testing.assert_close(a, want)
        # 'attend': prompt outputs depend on the instance tokens
        c = _block_prompt_outputs(attend, block, x1, prompts)
        d = _block_prompt_outputs(attend, block, x2, prompts)
        assert (c - d).abs().max() > 1e-3
        assert (a - c).abs().max() > 1e-3
    # the PML block attends in both modes
    a = _block_prompt_outputs(bypass, 3, x1, prompts)
    b = _block_prompt_outputs(bypass, 3, x2, prompts)
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(
        a, _block_prompt_outputs(attend, 3, x1, prompts))
    # instance outputs of a block do not depend on the mode
    ops = bypass._block_ops[1]
    xa = _run_block(ops, x1, prompts, bypass.prompter.block_attention(1))[0]
    xb = _run_block(ops, x1, prompts, attend.prompter.block_attention(1))[0]
    torch.testing.assert_close(xa, xb)


def test_bypass_in_a_forward_and_without_pml():
    _, bypass = seg_pair(prompt=ship(prompt_update='bypass'))
    _, attend = seg_pair(prompt=ship())
    attend.load_state_dict(bypass.state_dict())
    x = torch.randn(2, 3, 32, 32)
    bypass.train()
    _, losses = bypass.forward_with_losses(x)
    assert 'loss_pml' in losses
    bypass.eval()
    assert not torch.allclose(bypass(x)[-1], attend(x)[-1])
    # no PML: every block bypasses
    _, no_pml = seg_pair(prompt=ship(prompt_update='bypass', pml=False))
    p = no_pml.prompter
    assert all(p.block_attention(i).prompt_update == 'bypass'
               for i in range(4))
    assert 'bypass' in repr(p)


# -- pending prompters: hierarchy and prototypes from a checkpoint -------------
def _trained_twin(pair=seg_pair, **kw):
    torch.manual_seed(0)
    _, twin = pair(prompt=ship(**kw))
    for p in twin.prompter.parameters():
        p.data.normal_()
    return twin


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_pending_prompter_is_rebuilt_by_torch_load_state_dict(pair, tmp_path):
    trained = _trained_twin(pair)
    state = trained.state_dict()
    assert state['prompter.hierarchy_starts'].tolist() == STARTS
    assert 'prompter.prototypes' in state
    for starts, protos in ((None, None),
                           (str(tmp_path / 'no.json'),
                            str(tmp_path / 'no.pth'))):
        _, pending = pair(prompt=ship(starts=starts, prototypes=protos))
        p = pending.prompter
        assert p.pending == ['hierarchy', 'prototypes']
        assert not list(p.parameters())
        with pytest.raises(RuntimeError, match='pending.*hierarchy and '
                           'prototypes.*checkpoint'):
            pending(torch.randn(1, 3, 32, 32))
        pending.load_state_dict(state)  # strict
        assert p.pending == [] and p.starts == STARTS
        assert p.ap_starts == trained.prompter.ap_starts
        assert list(p.sources) == list(trained.prompter.sources)
        torch.testing.assert_close(p.prototypes, trained.prompter.prototypes)
        x = torch.randn(2, 3, 32, 32)
        for a, b in zip(pending(x), trained(x)):
            torch.testing.assert_close(a, b)


def test_pending_prompter_is_rebuilt_by_mmengine_load_checkpoint(tmp_path):
    from mmengine.runner import load_checkpoint, save_checkpoint
    trained = _trained_twin()
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(trained.state_dict(), path)
    _, pending = seg_pair(prompt=ship(starts=None, prototypes=None))
    load_checkpoint(pending, path, map_location='cpu', strict=False)
    assert pending.prompter.pending == []
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(pending(x)[-1], trained(x)[-1])
    # training such a model warns (once) that an optimizer built before the
    # load misses the prompt sets
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    seen = []
    handler = __import__('logging').Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    try:
        pending.train()
        pending(x)
        pending(x)
    finally:
        logger.removeHandler(handler)
    assert sum('optimizer built before that' in m for m in seen) == 1
    # strict mmengine load too: nothing missing or unexpected
    _, again = seg_pair(prompt=ship(starts=None, prototypes=None))
    load_checkpoint(again, path, map_location='cpu', strict=True)
    torch.testing.assert_close(again(x)[-1], trained(x)[-1])


def test_pending_parts_and_mismatch():
    trained = _trained_twin()
    state = trained.state_dict()
    # only the prototypes pending
    _, half = seg_pair(prompt=ship(prototypes=None))
    assert half.prompter.pending == ['prototypes']
    half.load_state_dict(state)
    assert half.prompter.pending == []
    # a checkpoint of another hierarchy is refused clearly
    _, other = seg_pair(prompt=ship(starts=[0, 1, 3]))
    with pytest.raises(RuntimeError, match=r'starts=\[0, 2, 3\].*'
                       r'starts=\[0, 1, 3\]'):
        other.load_state_dict(state)
    # a checkpoint without SHIP state leaves it pending, and says so
    _, pending = seg_pair(prompt=ship(starts=None, prototypes=None))
    result = pending.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith('prompter.')},
        strict=False)
    assert 'prompter.hierarchy_starts' in result.missing_keys
    assert 'prompter.prototypes' in result.missing_keys
    assert pending.prompter.pending == ['hierarchy', 'prototypes']
    # filled by hand
    pending.prompter.set_hierarchy(STARTS)
    pending.prompter.set_prototypes(trained.prompter.prototypes)
    assert pending.prompter.pending == []
    with pytest.raises(RuntimeError, match='already set'):
        pending.prompter.set_hierarchy(STARTS)
    # without SIP and AP nothing is pending
    _, plain = seg_pair(prompt=ship(starts=None, sip=False, ap=False,
                                    prototypes=None, pml=False))
    assert plain.prompter.pending == [] and plain.prompter.starts is None
