"""DAVPTPrompter on the tiny hosts: losses, gradients, DA-VPT+ biases,
parameter counts and bad input."""
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from mmship.davpt import proxy_anchor_loss, seg_class_features
from mmship.davpt.losses import class_sets_to_pos_mask
from mmship.engine.params import param_groups, param_table
from mmship.models import PromptedSegViT, PromptedViT
from tiny import PRETRAIN_ARGS, SEG_ARGS

D, L = 32, 4


def davpt(**kw):
    cfg = dict(type='DAVPTPrompter', num_classes=4, num_tokens=3,
               num_proxies=4, proxy_num_tokens=5, dropout=0.0,
               patch_loss=dict(type='mmship.ProxyAnchorLoss', loss_weight=0.3),
               cls_loss=dict(type='mmship.ProxyAnchorLoss', loss_weight=0.7))
    cfg.update(kw)
    return cfg


def cls_backbone(**kw):
    return PromptedViT(prompt=davpt(**kw), out_type='cls_token',
                       **PRETRAIN_ARGS).train()


def cls_targets(labels, num_classes=4):
    return dict(labels=torch.tensor(labels), num_classes=num_classes)


class Recorder:
    """Wraps ``after_block`` to keep the proxy block's input tokens."""

    def __init__(self, prompter, block):
        self.x_in = None
        self.block = block
        original = prompter.after_block

        def after_block(b, ctx, result):
            if b == block:
                self.x_in = result.x_in
            return original(b, ctx, result)

        prompter.after_block = after_block


def test_schedule_and_proxies():
    bb = cls_backbone()
    p = bb.prompter
    assert p.num_prompts == [3, 3, 3, 5]
    assert p.proxy_blocks == [3]
    assert p.proxies(3).shape == (4, D)
    assert p.proxies(3).data_ptr() == p.sources['deep_3'].tokens.data_ptr()
    assert p.class_to_proxy.tolist() == [0, 1, 2, 3]      # C <= M: identity
    assert 'prompter.class_to_proxy' in bb.state_dict()
    assert 'prompter.proxy_centroids' in bb.state_dict()


def test_losses_only_in_training_and_keys():
    bb = cls_backbone()
    img = torch.randn(4, 3, 32, 32)
    _, losses = bb.forward_with_losses(img, cls_targets([0, 1, 2, 3]))
    assert set(losses) == {'loss_davpt_patch', 'loss_davpt_cls'}
    assert all(torch.isfinite(v) and v.dtype == torch.float32
               for v in losses.values())
    bb.eval()
    _, losses = bb.forward_with_losses(img, cls_targets([0, 1, 2, 3]))
    assert losses == {}
    # two proxy blocks: one pair of losses (their mean over the blocks), and
    # each block's values logged under names without "loss" (not summed)
    bb = cls_backbone(proxy_blocks=[1, -1])
    _, losses = bb.forward_with_losses(img, cls_targets([0, 1, 2, 3]))
    assert set(losses) == {'loss_davpt_patch', 'loss_davpt_cls',
                           'davpt_patch_b1', 'davpt_cls_b1',
                           'davpt_patch_b3', 'davpt_cls_b3'}
    assert not any(v.requires_grad for k, v in losses.items()
                   if not k.startswith('loss'))


def _block_losses(bb, rec, labels):
    """Hand-computed (patch, cls) losses of the block a Recorder watched."""
    x_in, block = rec.x_in, rec.block
    proxies = bb.prompter.proxies(block)
    pos = F.one_hot(torch.tensor(labels), 4).bool()
    patch = 0.3 * proxy_anchor_loss(x_in[:, 1:].mean(1), proxies, pos)
    layer = bb.layers[block]
    qkv = layer.attn.qkv
    q = F.linear(layer.ln1(x_in[:, 0]), qkv.weight[:D], qkv.bias[:D])
    return patch, 0.7 * proxy_anchor_loss(q, proxies, pos)


@pytest.mark.parametrize('reduction', ['mean', 'sum'])
def test_losses_are_averaged_over_proxy_blocks(reduction):
    """One proxy block: the block's losses.  Two: their mean (the
    reference: the sum over proxy blocks divided by their number), or their
    sum with block_reduction='sum'."""
    img = torch.randn(4, 3, 32, 32)
    labels = [2, 0, 1, 3]
    torch.manual_seed(0)
    one = cls_backbone(block_reduction=reduction)
    rec = Recorder(one.prompter, 3)
    _, losses = one.forward_with_losses(img, cls_targets(labels))
    patch3, cls3 = _block_losses(one, rec, labels)
    torch.testing.assert_close(losses['loss_davpt_patch'], patch3)
    torch.testing.assert_close(losses['loss_davpt_cls'], cls3)
    assert set(losses) == {'loss_davpt_patch', 'loss_davpt_cls'}

    two = cls_backbone(proxy_blocks=[1, 3], block_reduction=reduction)
    rec1, rec3 = Recorder(two.prompter, 1), Recorder(two.prompter, 3)
    _, losses = two.forward_with_losses(img, cls_targets(labels))
    (p1, c1), (p3, c3) = _block_losses(two, rec1, labels), \
        _block_losses(two, rec3, labels)
    assert abs(p1.item() - p3.item()) > 1e-4       # the two blocks differ
    n = 2.0 if reduction == 'mean' else 1.0
    torch.testing.assert_close(losses['loss_davpt_patch'], (p1 + p3) / n)
    torch.testing.assert_close(losses['loss_davpt_cls'], (c1 + c3) / n)
    torch.testing.assert_close(losses['davpt_patch_b1'], p1)
    torch.testing.assert_close(losses['davpt_cls_b3'], c3)
    # what the optimiser sees: mmengine sums the keys containing "loss"
    from mmengine.model import BaseModel
    total, _ = BaseModel.parse_losses(None, losses)
    torch.testing.assert_close(total, (p1 + p3 + c1 + c3) / n)


def test_classification_losses_equal_hand_computation():
    bb = cls_backbone()
    rec = Recorder(bb.prompter, 3)
    img = torch.randn(4, 3, 32, 32)
    labels = [2, 0, 2, 3]
    _, losses = bb.forward_with_losses(img, cls_targets(labels))
    x_in = rec.x_in
    proxies = bb.prompter.sources['deep_3'].tokens[0, :4]
    pos = F.one_hot(torch.tensor(labels), 4).bool()
    # patch-to-prompt: mean of the block input's patch tokens
    want_patch = 0.3 * proxy_anchor_loss(x_in[:, 1:].mean(1), proxies, pos)
    # prompt-to-CLS: W_q LN(x_cls), by hand from the host's weights
    layer = bb.layers[3]
    qkv = layer.attn.qkv
    q = F.linear(layer.ln1(x_in[:, 0]), qkv.weight[:D], qkv.bias[:D])
    want_cls = 0.7 * proxy_anchor_loss(q, proxies, pos)
    torch.testing.assert_close(losses['loss_davpt_patch'], want_patch)
    torch.testing.assert_close(losses['loss_davpt_cls'], want_cls)


def test_cls_loss_gradient_reaches_proxies_and_the_cls_query_path():
    bb = cls_backbone(patch_loss=None)
    img = torch.randn(4, 3, 32, 32)
    _, losses = bb.forward_with_losses(img, cls_targets([0, 1, 2, 3]))
    assert set(losses) == {'loss_davpt_cls'}
    losses['loss_davpt_cls'].backward()
    proxy_grad = bb.prompter.sources['deep_3'].tokens.grad[0]
    assert proxy_grad[:4].abs().sum(1).min() > 0      # every proxy
    # the proxy block's other prompts do not reach its input
    assert proxy_grad[4:].abs().sum() == 0
    # earlier blocks' prompts reach the CLS token entering the proxy block
    for b in range(3):
        assert bb.prompter.sources[f'deep_{b}'].tokens.grad.abs().sum() > 0
    # the host stays frozen
    assert all(p.grad is None for n, p in bb.named_parameters()
               if not n.startswith('prompter.'))


def test_patch_loss_gradient_reaches_proxies_and_earlier_prompts():
    bb = cls_backbone(cls_loss=None)
    img = torch.randn(4, 3, 32, 32)
    _, losses = bb.forward_with_losses(img, cls_targets([0, 1, 2, 3]))
    losses['loss_davpt_patch'].backward()
    assert bb.prompter.sources['deep_3'].tokens.grad[0, :4].abs().sum() > 0
    assert bb.prompter.sources['deep_0'].tokens.grad.abs().sum() > 0


def _seg_maps():
    seg = torch.full((2, 32, 32), 255, dtype=torch.long)
    seg[0, :, :16] = 1
    seg[0, :, 16:] = 2
    seg[0, :4, :4] = 255
    seg[1, :20] = 0
    seg[1, 20:, 5:] = 4
    return seg


def _seg_targets(seg, num_classes=5):
    sets = torch.zeros(seg.shape[0], num_classes, dtype=torch.bool)
    for b in range(seg.shape[0]):
        for c in seg[b].unique().tolist():
            if c != 255:
                sets[b, c] = True
    return dict(seg_maps=seg, class_sets=sets, num_classes=num_classes,
                ignore_index=255)


def test_segmentation_losses_equal_hand_computation():
    bb = PromptedSegViT(prompt=davpt(num_classes=5, num_proxies=3),
                        **SEG_ARGS).train()
    mapping = torch.tensor([0, 2, 1, 1, 0])
    bb.prompter.set_mapping(mapping)
    rec = Recorder(bb.prompter, 3)
    seg = _seg_maps()
    targets = _seg_targets(seg)
    _, losses = bb.forward_with_losses(torch.randn(2, 3, 32, 32), targets)
    x_in = rec.x_in
    proxies = bb.prompter.proxies(3)
    feats, img_idx, classes = seg_class_features(x_in[:, 1:], seg, 8, 5, 255)
    assert list(zip(img_idx.tolist(), classes.tolist())) == \
        [(0, 1), (0, 2), (1, 0), (1, 4)]
    want_patch = 0.3 * proxy_anchor_loss(
        feats, proxies, F.one_hot(mapping[classes], 3).bool())
    torch.testing.assert_close(losses['loss_davpt_patch'], want_patch)
    # CLS query: positive of every proxy its image's classes map to
    pos = class_sets_to_pos_mask(targets['class_sets'], mapping, 3)
    assert pos.tolist() == [[False, True, True], [True, False, False]]
    layer = bb.layers[3]
    mha = layer.attn.attn
    q = F.linear(layer.ln1(x_in[:, 0]), mha.in_proj_weight[:D],
                 mha.in_proj_bias[:D])
    torch.testing.assert_close(losses['loss_davpt_cls'],
                               0.7 * proxy_anchor_loss(q, proxies, pos))


def test_segmentation_map_must_match_the_input():
    bb = PromptedSegViT(prompt=davpt(num_classes=5, num_proxies=5),
                        **SEG_ARGS).train()
    targets = _seg_targets(torch.zeros(2, 24, 32, dtype=torch.long))
    with pytest.raises(ValueError, match='patch grid'):
        bb.forward_with_losses(torch.randn(2, 3, 32, 32), targets)


# -- DA-VPT+ ------------------------------------------------------------------------
def test_bias_delta_layout_and_effect():
    bb = cls_backbone(bias_tuning=['k', 'v']).eval()
    p = bb.prompter
    assert p.bias_tuning == ['k', 'v']
    assert set(dict(p.bias_deltas.named_parameters())) == {'0', '1', '2', '3'}
    img = torch.randn(2, 3, 32, 32)
    ref = bb(img)[0]
    delta = p.block_deltas(1)['qkv.bias']
    assert delta.shape == (3 * D, ) and delta.abs().sum() == 0
    with torch.no_grad():
        p.bias_deltas['1'][0].fill_(0.5)      # k
        p.bias_deltas['1'][1].fill_(-0.25)    # v
    delta = p.block_deltas(1)['qkv.bias']
    assert delta[:D].abs().sum() == 0          # q: fixed zeros
    assert torch.all(delta[D:2 * D] == 0.5) and torch.all(delta[2 * D:] ==
                                                          -0.25)
    assert not torch.allclose(bb(img)[0], ref, atol=1e-4)
    # the q part is not a parameter
    assert sum(t.numel() for t in p.bias_deltas.parameters()) == 4 * 2 * D
    assert cls_backbone(bias_tuning=['v'], bias_blocks=[2]).prompter \
        .block_deltas(1) == {}


def test_key_bias_delta_gets_no_gradient_through_softmax():
    """A bias added to every key shifts each query's logits by a constant,
    which softmax ignores: b_K's gradient is zero up to rounding, b_V's is
    not.  (Why b_K is in no DA-VPT+ preset; an explicit list still may.)"""
    bb = cls_backbone(bias_tuning=['k', 'v'])
    img = torch.randn(4, 3, 32, 32)
    feats, losses = bb.forward_with_losses(img, cls_targets([0, 1, 2, 3]))
    (feats[0].pow(2).sum() + sum(losses.values())).backward()
    g = bb.prompter.bias_deltas['1'].grad
    assert g[1].abs().max() > 1e-3
    assert g[0].abs().max() < 1e-5 * g[1].abs().max() + 1e-7


# Host parameters each preset names, per host layout (tiny hosts: L = 4).
_REF_PARTS = {
    'mmpretrain': ['attn.proj.bias', 'ffn.layers.1.bias', 'ln2.bias',
                   'ln1.weight', 'ln1.bias'],
    'mmseg': ['attn.attn.out_proj.bias', 'ffn.layers.1.bias', 'ln2.bias',
              'ln1.weight', 'ln1.bias'],
}


def _expected_host(plus, host_format):
    if plus != 'reference':
        return set()
    return {'cls_token'} | {f'layers.{i}.{n}' for i in range(L)
                            for n in _REF_PARTS[host_format]}


def _plus_backbone(plus, seg, **kw):
    if seg:
        return PromptedSegViT(prompt=davpt(num_classes=5, num_proxies=5,
                                           plus=plus, **kw),
                              **SEG_ARGS).train()
    return cls_backbone(plus=plus, **kw)


@pytest.mark.parametrize('seg', [False, True])
@pytest.mark.parametrize('plus,count', [
    (None, 0),
    ('paper', L * D),                               # b_V: 128
    ('reference', L * D + L * 5 * D + D),   # v + 5 host per block + CLS = 800
])
def test_plus_presets_train_exactly_what_they_name(plus, count, seg):
    """Each preset trains the parameters it names and no other host
    parameter; every one of them gets a gradient in one training step, and
    its parameter count is the hand count (6 L D + D for the reference's
    set: 73 x 384 = 28,032 on ViT-S/14, 73 x 768 = 56,064 on ViT-B/16)."""
    bb = _plus_backbone(plus, seg)
    p = bb.prompter
    assert p.bias_tuning == ([] if plus is None else ['v'])
    host = {n for n, t in bb.named_parameters()
            if t.requires_grad and not n.startswith('prompter.')}
    assert host == _expected_host(plus, bb.host_format)
    deltas = sum(t.numel() for t in p.bias_deltas.parameters())
    host_count = sum(t.numel() for n, t in bb.named_parameters()
                     if n in host)
    assert deltas + host_count == count
    assert p.plus_param_counts() == dict(bias_deltas=deltas, host=host_count,
                                         total=count)
    # one training step: every trainable parameter gets a gradient
    if seg:
        targets = _seg_targets(_seg_maps())
    else:
        targets = cls_targets([0, 1, 2, 3])
    img = torch.randn(targets['seg_maps'].shape[0] if seg else 4, 3, 32, 32)
    feats, losses = bb.forward_with_losses(img, targets)
    (sum(f.pow(2).mean() for f in feats) + sum(
        v for k, v in losses.items() if k.startswith('loss'))).backward()
    no_grad = [n for n, t in bb.named_parameters() if t.requires_grad and
               (t.grad is None or t.grad.abs().sum() == 0)]
    assert no_grad == []


def test_plus_presets_add_to_explicit_lists_and_are_logged():
    from mmengine.logging import MMLogger
    bb = cls_backbone(plus='paper', bias_tuning=['q'],
                      host_tuning=['cls_token'])
    p = bb.prompter
    assert p.bias_tuning == ['q', 'v'] and p.host_parts == ('cls_token', )
    assert p.plus_param_counts() == dict(bias_deltas=L * 2 * D, host=D,
                                         total=L * 2 * D + D)
    assert [n for n, t in bb.named_parameters()
            if t.requires_grad and not n.startswith('prompter.')] == \
        ['cls_token']
    # explicit lists alone still work, b_K included if asked for
    bb = cls_backbone(bias_tuning=['k', 'v'], host_tuning=['ln1'])
    assert bb.prompter.plus is None and bb.prompter.bias_tuning == ['k', 'v']
    assert bb.prompter.plus_param_counts()['total'] == L * 2 * D + L * 2 * D
    with pytest.raises(ValueError, match='plus must be one of'):
        cls_backbone(plus='kv')
    with pytest.raises(ValueError, match="Unknown host part 'fc2'"):
        cls_backbone(host_tuning=['fc2'])
    MMLogger.get_instance('davpt_plus_log')
    import logging
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        cls_backbone(plus='reference')
    finally:
        logger.removeHandler(handler)
    msg = ' '.join(r.getMessage() for r in records)
    assert "preset 'reference'" in msg and f'= {6 * L * D + D} parameters' \
        in msg


def _classifier(**kw):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    init_default_scope('mmpretrain')
    return PRETRAIN_MODELS.build(
        dict(type='PromptedImageClassifier',
             backbone=dict(type='PromptedViT', prompt=davpt(**kw),
                           out_type='cls_token', **PRETRAIN_ARGS),
             head=dict(type='LinearClsHead', num_classes=4, in_channels=D)))


@pytest.mark.parametrize('kw,prompter', [
    (dict(), 3 * 3 * D + 5 * D),                                  # 448
    (dict(bias_tuning=['k', 'v']), 3 * 3 * D + 5 * D + L * 2 * D),   # 704
    (dict(bias_tuning=['v'], bias_blocks=[0, -1]), 448 + 2 * D),    # 512
    (dict(num_tokens=10, proxy_num_tokens=None, num_proxies=10,
          num_classes=4, bias_tuning=['k', 'v']), 4 * 10 * D + L * 2 * D),
    (dict(plus='paper'), 448 + L * D),                              # 576
])
def test_parameter_counts_match_hand_count(kw, prompter):
    model = _classifier(**kw)
    groups = param_groups(model)
    assert groups['backbone.prompter'] == [prompter, prompter]
    host = groups['backbone (host)']
    assert host[0] == 0 and host[1] > 0
    head = D * 4 + 4
    table = param_table(model)
    trainable = prompter + head
    assert f'{trainable / 1e6:.4f}M' in table
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) \
        == trainable


def _cls_batch(model, n=4):
    from mmpretrain.structures import DataSample
    inputs = torch.randn(n, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 4) for i in range(n)]
    return inputs, samples


@pytest.mark.parametrize('kw', [dict(bias_tuning=['k', 'v']),
                                dict(plus='reference')])
def test_every_trainable_parameter_reaches_the_loss(kw):
    model = _classifier(**kw).train()
    inputs, samples = _cls_batch(model)
    losses = model.loss(inputs, samples)
    assert {'loss_davpt_patch', 'loss_davpt_cls', 'loss'} <= set(losses)
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters()
              if p.requires_grad and p.grad is None]
    assert unused == []


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_ddp_without_find_unused_parameters():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    if dist.is_initialized():
        pytest.skip('a process group already exists')
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        model = _classifier(plus='reference').train()
        ddp = DDP(model, find_unused_parameters=False)
        inputs, samples = _cls_batch(model)
        for _ in range(3):
            losses = ddp(inputs, samples, mode='loss')
            sum(losses.values()).backward()
    finally:
        dist.destroy_process_group()


# -- bad input ----------------------------------------------------------------------
def test_more_proxies_than_prompts_in_the_proxy_block():
    with pytest.raises(ValueError, match='num_proxies=6.*only 5 prompts'):
        cls_backbone(num_proxies=6)
    with pytest.raises(ValueError, match='only 3 prompts'):
        cls_backbone(proxy_num_tokens=None)   # 3 tokens, 4 proxies


@pytest.mark.parametrize('blocks', [[4], [-5], [0, 7]])
def test_proxy_block_outside_the_depth(blocks):
    with pytest.raises(ValueError, match='does not exist.*0..3'):
        cls_backbone(proxy_blocks=blocks)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match='twice'):
        cls_backbone(proxy_blocks=[3, -1])
    with pytest.raises(ValueError, match='at least one proxy block'):
        cls_backbone(proxy_blocks=[])
    with pytest.raises(ValueError, match="'q', 'k', 'v'"):
        cls_backbone(bias_tuning=['k', 'bias'])
    with pytest.raises(ValueError, match='does not exist'):
        cls_backbone(bias_tuning=['v'], bias_blocks=[9])
    with pytest.raises(ValueError, match='num_classes'):
        cls_backbone(num_classes=0)
    with pytest.raises(ValueError, match='CLS query'):
        PromptedViT(prompt=davpt(), with_cls_token=False,
                    out_type='featmap', **PRETRAIN_ARGS)


def test_training_without_labels_or_mapping_fails_clearly():
    bb = cls_backbone()
    img = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match='needs class labels'):
        bb.forward_with_losses(img, None)
    with pytest.raises(ValueError, match='built for 4'):
        bb.forward_with_losses(img, cls_targets([0, 1], num_classes=7))
    with pytest.raises(ValueError, match='one class label per image'):
        bb.forward_with_losses(img, dict(labels=torch.zeros(2, 4).long(),
                                         num_classes=4))
    bb = cls_backbone(num_classes=9)     # C > M: needs a computed mapping
    assert not bb.prompter.mapping_ready
    with pytest.raises(RuntimeError, match='DAVPTMappingHook'):
        bb.forward_with_losses(img, cls_targets([0, 8], num_classes=9))
    bb.eval()(img)                       # inference does not need it
    with pytest.raises(ValueError, match='one entry per class'):
        bb.prompter.set_mapping([0, 1])
    with pytest.raises(ValueError, match='0..3'):
        bb.prompter.set_mapping(torch.arange(9))


def test_classifier_without_labels_fails_clearly():
    from mmpretrain.structures import DataSample
    model = _classifier().train()
    with pytest.raises(ValueError, match='needs class labels'):
        model.loss(torch.randn(2, 3, 32, 32), [DataSample(), DataSample()])


@pytest.mark.parametrize('seg', [False, True])
def test_losses_under_bf16_autocast_are_fp32_and_finite(seg):
    if seg:
        bb = PromptedSegViT(prompt=davpt(num_classes=5, num_proxies=5),
                            **SEG_ARGS).train()
        targets = _seg_targets(_seg_maps())
    else:
        bb = cls_backbone(bias_tuning=['k', 'v'])
        targets = cls_targets([0, 1])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, losses = bb.forward_with_losses(torch.randn(2, 3, 32, 32), targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v)
               for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in bb.prompter.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
