"""PromptedEncoderDecoder / PromptedImageClassifier: the stock task models
plus the backbone's auxiliary losses and labels."""
import copy

import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmpretrain.structures import DataSample
from mmseg.structures import SegDataSample

from mmship.models.segmentor import seg_targets
from tiny import PRETRAIN_ARCH, SEG_ARGS, deep

SEG_MODEL = dict(
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.] * 3,
                           std=[1.] * 3),
    backbone=dict(type='PromptedSegViT', **SEG_ARGS),
    decode_head=dict(type='FCNHead', in_channels=32, in_index=1, channels=8,
                     num_convs=1, num_classes=3, norm_cfg=None,
                     loss_decode=dict(type='CrossEntropyLoss')),
    auxiliary_head=dict(type='FCNHead', in_channels=32, in_index=0,
                        channels=8, num_convs=1, num_classes=3,
                        norm_cfg=None,
                        loss_decode=dict(type='CrossEntropyLoss',
                                         loss_weight=0.4)))


def _seg_samples(n=2):
    samples = []
    for i in range(n):
        s = SegDataSample()
        label = torch.randint(0, 3, (1, 32, 32))
        label[:, :4] = 255
        s.gt_sem_seg = PixelData(data=label)
        s.set_metainfo(dict(img_shape=(32, 32), pad_shape=(32, 32),
                            ori_shape=(32, 32)))
        samples.append(s)
    return samples


def test_segmentor_without_aux_losses_equals_stock():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    ours = MODELS.build(dict(type='PromptedEncoderDecoder',
                             **copy.deepcopy(SEG_MODEL)))
    stock = MODELS.build(dict(type='EncoderDecoder',
                              **copy.deepcopy(SEG_MODEL)))
    stock.load_state_dict(ours.state_dict())
    img, samples = torch.randn(2, 3, 32, 32), _seg_samples()
    ours.eval(), stock.eval()  # dropout off; losses only
    a, b = ours.loss(img, samples), stock.loss(img, samples)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_seg_targets_class_sets_exclude_ignore():
    samples = _seg_samples(1)
    samples[0].gt_sem_seg.data[:] = 255
    samples[0].gt_sem_seg.data[0, 5:7, 5:7] = 2
    t = seg_targets(samples, num_classes=3, ignore_index=255)
    assert t['class_sets'].tolist() == [[False, False, True]]
    assert t['seg_maps'].shape == (1, 32, 32)


def test_classifier_without_aux_losses_equals_stock_and_with_them_adds():
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = dict(backbone=dict(type='PromptedViT', arch=PRETRAIN_ARCH,
                             img_size=32, patch_size=8, prompt=deep()),
               head=dict(type='LinearClsHead', num_classes=3,
                         in_channels=32))
    ours = MODELS.build(dict(type='PromptedImageClassifier',
                             **copy.deepcopy(cfg)))
    stock = MODELS.build(dict(type='ImageClassifier', **copy.deepcopy(cfg)))
    stock.load_state_dict(ours.state_dict())
    ours.eval(), stock.eval()
    img = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
    torch.testing.assert_close(ours.loss(img, samples)['loss'],
                               stock.loss(img, samples)['loss'])
    # a prompter with auxiliary losses gets the labels and adds its loss
    davpt = MODELS.build(dict(
        type='PromptedImageClassifier',
        backbone=dict(type='PromptedViT', arch=PRETRAIN_ARCH, img_size=32,
                      patch_size=8,
                      prompt=dict(type='DAVPTPrompter', num_classes=3,
                                  num_tokens=3, num_proxies=3)),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))
    losses = davpt.loss(img, samples)
    assert {'loss', 'loss_davpt_patch', 'loss_davpt_cls'} <= set(losses)
