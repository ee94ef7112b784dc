"""``PromptedEncoderDecoder(fast_head=...)`` changes speed, not results: a
tiny ViT + MultiLevelNeck + UPerHead + FCN auxiliary head (the structure of
the ADE20K configs) gives the same losses and gradients with the switch off
(mmseg's path) and on (channels_last, compiled, losses restated without
boolean indexing), from the same weights and inputs, in fp64 on the CPU.

The compiled tests use torch.compile's ``aot_eager`` backend: the same
dynamo graph capture and AOTAutograd backward as inductor, without
inductor's C++ kernel build, which takes over a minute on 2 cores."""
import copy
import os
import socket

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from tiny import deep

NUM_CLASSES, SIZE = 5, 64
CPU_COMPILE = dict(backend='aot_eager')

MODEL = dict(
    type='PromptedEncoderDecoder',
    backbone=dict(type='PromptedSegViT', img_size=SIZE, patch_size=8,
                  embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2,
                  out_indices=(0, 1, 2, 3), final_norm=True,
                  prompt=deep(2, dropout=0.0)),
    neck=dict(type='MultiLevelNeck', in_channels=[32] * 4, out_channels=32,
              scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead', in_channels=[32] * 4, in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6), channels=16, dropout_ratio=0.0,
        num_classes=NUM_CLASSES, norm_cfg=dict(type='BN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=32, in_index=3, channels=8, num_convs=1,
        concat_input=False, dropout_ratio=0.0, num_classes=NUM_CLASSES,
        norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))


def build(fast_head, **overrides):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = copy.deepcopy(MODEL)
    cfg.update(overrides)
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg, fast_head=fast_head))
    model.init_weights()
    # prompts start at random values, not zero, so that they matter
    for p in model.backbone.prompter.parameters():
        p.data.normal_()
    return model.double().train()


def batch(seed=1, n=2):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        label = torch.randint(0, NUM_CLASSES, (1, SIZE, SIZE), generator=g)
        label[:, :5] = 255  # some ignored pixels
        s = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE),
                                        ori_shape=(SIZE, SIZE),
                                        pad_shape=(SIZE, SIZE)))
        s.gt_sem_seg = PixelData(data=label)
        samples.append(s)
    return torch.randn(n, 3, SIZE, SIZE, generator=g,
                       dtype=torch.float64), samples


def losses_and_grads(model, inputs, samples):
    model.zero_grad(set_to_none=True)
    losses = model.loss(inputs, samples)
    total, _ = model.parse_losses(losses)
    total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()
             if p.requires_grad}
    return losses, grads


def assert_same(a, b):
    """Same losses and gradients, to fp64 rounding (fp32 would leave the
    argmax of nearly tied logits, hence the pixel accuracy, to chance)."""
    (la, ga), (lb, gb) = a, b
    assert la.keys() == lb.keys()
    for k in la:
        torch.testing.assert_close(la[k], lb[k], rtol=1e-6, atol=1e-9,
                                   msg=lambda m: f'{k}: {m}')
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-6, atol=1e-9,
                                   msg=lambda m: f'grad of {k}: {m}')


def test_fast_head_gives_mmseg_losses_and_gradients():
    stock, fast = build(False), build(CPU_COMPILE)
    assert stock.compile_options is None
    # same weights, same keys: compiling left the modules in place
    assert stock.state_dict().keys() == fast.state_dict().keys()
    assert not any('_orig_mod' in k for k in fast.state_dict())
    for a, b in zip(stock.state_dict().values(), fast.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    conv = fast.decode_head.fpn_bottleneck.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)

    for seed in (1, 2):  # a second batch reuses the compiled graph
        inputs, samples = batch(seed)
        ref = losses_and_grads(stock, inputs, samples)
        assert_same(ref, losses_and_grads(fast, inputs, samples))
    losses, grads = ref
    assert {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_ce',
            'aux.acc_seg'} <= losses.keys()
    # gradients reach the prompts (through the compiled region's input
    # gradients), the neck and both heads, and are not trivial
    for prefix in ('backbone.prompter', 'neck', 'decode_head',
                   'auxiliary_head'):
        group = [g for n, g in grads.items() if n.startswith(prefix)]
        assert group and all(g.abs().sum() > 0 for g in group), prefix


def test_restated_loss_equals_mmseg_loss_by_feat():
    """Eager, contiguous: the very same numbers, accuracy included."""
    from mmship.models.segmentor import head_loss
    model = build(False)
    inputs, samples = batch()
    feats = model.neck(model.backbone(inputs))
    label = model.decode_head._stack_batch_gt(samples)
    for head in (model.decode_head, model.auxiliary_head):
        ours, theirs = head_loss(head, feats, label), head.loss(
            feats, samples, None)
        assert ours.keys() == theirs.keys()
        for k in ours:
            torch.testing.assert_close(ours[k], theirs[k], rtol=1e-6,
                                       atol=0, msg=lambda m: f'{k}: {m}')


def test_the_comparison_sees_a_changed_loss():
    """The comparison above fails when the math differs: here the auxiliary
    loss weight (0.4 -> 0.5) changes only the aux loss and the gradients."""
    inputs, samples = batch()
    ref = losses_and_grads(build(False), inputs, samples)
    aux = copy.deepcopy(MODEL['auxiliary_head'])
    aux['loss_decode']['loss_weight'] = 0.5
    other = losses_and_grads(build(CPU_COMPILE, auxiliary_head=aux), inputs,
                             samples)
    with pytest.raises(AssertionError, match='aux.loss_ce'):
        assert_same(ref, other)
    with pytest.raises(AssertionError, match='grad of'):
        assert_same((ref[0], ref[1]), (ref[0], other[1]))


def test_several_auxiliary_heads_and_copies():
    aux = [copy.deepcopy(MODEL['auxiliary_head']) for _ in range(2)]
    aux[1]['in_index'] = 2
    inputs, samples = batch()
    stock, fast = build(False, auxiliary_head=aux), \
        build(CPU_COMPILE, auxiliary_head=aux)
    ref = losses_and_grads(stock, inputs, samples)
    assert {'aux_0.loss_ce', 'aux_1.loss_ce'} <= ref[0].keys()
    assert_same(ref, losses_and_grads(fast, inputs, samples))
    # after a compiled step, a copy (EMA hooks copy models) computes with
    # its own weights
    twin = copy.deepcopy(fast)
    with torch.no_grad():
        for p in twin.decode_head.parameters():
            p.add_(1.0)
    assert twin.loss(inputs, samples)['decode.loss_ce'] != \
        fast.loss(inputs, samples)['decode.loss_ce']


def test_heads_it_does_not_restate_are_refused():
    head = dict(copy.deepcopy(MODEL['decode_head']),
                sampler=dict(type='OHEMPixelSampler', min_kept=10))
    with pytest.raises(ValueError, match='UPerHead .*pixel sampler'):
        build(CPU_COMPILE, decode_head=head)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('find_unused', [False, True])
def test_fast_head_under_ddp(find_unused):
    """MMDistributedDataParallel around the whole segmentor (as mmengine's
    runner wraps it) with the compiled heads: every trainable parameter gets
    its gradient, equal to the unwrapped model's."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    if dist.is_initialized():
        pytest.skip('a process group already exists')
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        inputs, samples = batch()
        ref = losses_and_grads(build(False), inputs, samples)
        fast = build(CPU_COMPILE)
        ddp = MMDistributedDataParallel(
            fast, find_unused_parameters=find_unused)
        for _ in range(2):
            fast.zero_grad(set_to_none=True)
            losses = ddp(inputs, samples, mode='loss')
            fast.parse_losses(losses)[0].backward()
        grads = {n: p.grad for n, p in fast.named_parameters()
                 if p.requires_grad}
        assert_same(ref, (losses, grads))
    finally:
        dist.destroy_process_group()
