"""SHIP's offline tools end to end on tiny mmseg / mmpretrain configs."""
import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmship.models import PromptedSegViT, PromptedViT
from tiny import PRETRAIN_ARCH, SEG_ARGS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hierarchy_tool = _tool('ship_hierarchy')
prototypes_tool = _tool('ship_prototypes')


def _ship_prompt(out):
    return dict(type='SHIPPrompter', starts=f'{out}/hierarchy.json',
                prototypes=f'{out}/prototypes.pth', num_tokens=2,
                ssp_tokens=2, ap_groups=1, ap_tokens=2, pml_tokens=2)


@pytest.fixture(scope='module')
def seg_config(tmp_path_factory):
    """A tiny mmseg config on the demo shapes set with 'pretrained' weights."""
    from mmship.datasets.demo import make_demo_shapes
    tmp = tmp_path_factory.mktemp('seg')
    make_demo_shapes(str(tmp / 'data'), num_train=12, num_val=2, size=32)
    torch.manual_seed(123)
    vit = PromptedSegViT(**SEG_ARGS).eval()
    for param in vit.parameters():   # unlike any fresh init
        param.data.normal_(0, 0.3)
    torch.save(vit.state_dict(), tmp / 'vit.pth')
    out = tmp / 'ship'
    cfg = dict(
        default_scope='mmseg',
        custom_imports=dict(imports=['mmship'], allow_failed_imports=False),
        model=dict(
            type='PromptedEncoderDecoder',
            data_preprocessor=dict(
                type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                seg_pad_val=255, size=(32, 32)),
            backbone=dict(type='PromptedSegViT', **SEG_ARGS,
                          prompt=_ship_prompt(out),
                          init_cfg=dict(type='Pretrained',
                                        checkpoint=str(tmp / 'vit.pth'))),
            decode_head=dict(
                type='FCNHead', in_channels=32, in_index=1, channels=8,
                num_convs=1, num_classes=4, norm_cfg=dict(type='BN'),
                loss_decode=dict(type='CrossEntropyLoss')),
            test_cfg=dict(mode='whole')),
        train_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(
                type='DemoShapesDataset', data_root=str(tmp / 'data'),
                data_prefix=dict(img_path='images/training',
                                 seg_map_path='annotations/training'),
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations', reduce_zero_label=True),
                    dict(type='RandomResize', scale=(32, 32),
                         ratio_range=(0.75, 1.5), keep_ratio=True),
                    dict(type='RandomCrop', crop_size=(32, 32)),
                    dict(type='RandomFlip', prob=0.5),
                    dict(type='PackSegInputs')])),
        test_dataloader=dict(
            batch_size=1, num_workers=0,
            dataset=dict(
                type='DemoShapesDataset', data_root=str(tmp / 'data'),
                data_prefix=dict(img_path='images/validation',
                                 seg_map_path='annotations/validation'),
                pipeline=[dict(type='LoadImageFromFile'),
                          dict(type='Resize', scale=(40, 40), keep_ratio=True),
                          dict(type='LoadAnnotations', reduce_zero_label=True),
                          dict(type='PackSegInputs')])),
        ship_offline=dict(descriptor='mean_patch', threshold=0.99, k=3),
    )
    path = tmp / 'seg_cfg.py'
    Config(cfg).dump(str(path))
    return path, out, vit


@pytest.fixture(scope='module')
def cls_config(tmp_path_factory):
    """A tiny mmpretrain config on a CustomDataset folder."""
    tmp = tmp_path_factory.mktemp('cls')
    rng = np.random.default_rng(0)
    lines = []
    for i in range(10):
        img = rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp / f'{i}.jpg'), img)
        lines.append(f'{i}.jpg {i % 3}')
    (tmp / 'train800.txt').write_text('\n'.join(lines) + '\n')
    torch.manual_seed(1)
    args = dict(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                out_type='cls_token')
    vit = PromptedViT(**args)
    torch.save(vit.state_dict(), tmp / 'vit.pth')
    out = tmp / 'ship'
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(32, 32)),
                dict(type='PackInputs')]
    cfg = dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmship'], allow_failed_imports=False),
        data_preprocessor=dict(num_classes=3, mean=[127.5] * 3,
                               std=[127.5] * 3, to_rgb=True),
        model=dict(
            type='PromptedImageClassifier',
            backbone=dict(type='PromptedViT', **args,
                          prompt=_ship_prompt(out),
                          init_cfg=dict(type='Pretrained',
                                        checkpoint=str(tmp / 'vit.pth'))),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32)),
        train_dataloader=dict(
            batch_size=4, num_workers=0,
            dataset=dict(type='CustomDataset', data_root=str(tmp),
                         ann_file='train800.txt', data_prefix='',
                         with_label=True, pipeline=pipeline)),
    )
    path = tmp / 'cls_cfg.py'
    Config(cfg).dump(str(path))
    return path, out, vit


def test_hierarchy_tool_on_a_segmentation_config(seg_config):
    path, out, vit = seg_config
    info = hierarchy_tool.main([str(path), '--num-images', '10', '--seed',
                                '3', '--num-workers', '0', '--device', 'cpu'])
    # the config's hierarchy.json path; ship_offline gave the defaults
    saved = json.loads((out / 'hierarchy.json').read_text())
    assert saved['starts'] == info['starts']
    assert saved['descriptor'] == 'mean_patch' and saved['threshold'] == 0.99
    assert saved['num_images'] == 10 and saved['num_layers'] == 4
    S = np.load(out / 'affinity.npy')
    std = np.load(out / 'affinity_std.npy')
    assert S.shape == std.shape == (4, 4)
    np.testing.assert_allclose(np.diag(S), 1.0, atol=1e-6)
    assert (std >= 0).all() and std.max() > 0
    assert (out / 'affinity.png').stat().st_size > 1000
    from mmship.ship.hierarchy import greedy_hierarchy
    assert saved['starts'] == greedy_hierarchy(S, 0.99)

    # the pretrained weights were used: the affinity of the checkpoint's
    # backbone on the same seeded images
    from mmship.ship.hierarchy import compute_affinity
    from mmship.ship.offline import (build_frozen_model, build_train_subset,
                                     preprocessed_batches)
    cfg = Config.fromfile(str(path))
    model = build_frozen_model(cfg)
    dataset, indices = build_train_subset(cfg, 10, 3)
    mine, _, _ = compute_affinity(
        vit, preprocessed_batches(model, dataset, indices, 8, 0, seed=3),
        'mean_patch')
    np.testing.assert_allclose(mine, S, atol=1e-6)
    random, _, _ = compute_affinity(
        PromptedSegViT(**SEG_ARGS).eval(),
        preprocessed_batches(model, dataset, indices, 8, 0, seed=3),
        'mean_patch')
    assert not np.allclose(random, S, atol=1e-3)

    again = hierarchy_tool.main([str(path), '--num-images', '10', '--seed',
                                 '3', '--num-workers', '0', '--out-dir',
                                 str(out / 'again')])
    np.testing.assert_array_equal(np.load(out / 'again' / 'affinity.npy'), S)
    assert again['starts'] == info['starts']
    other = hierarchy_tool.main([str(path), '--num-images', '10', '--seed',
                                 '4', '--num-workers', '0', '--out-dir',
                                 str(out / 'other')])
    assert not np.allclose(np.load(out / 'other' / 'affinity.npy'), S)
    assert other['num_images'] == 10

    # the test pipeline (images keep their own sizes) works too
    test = hierarchy_tool.main([str(path), '--num-images', '4',
                                '--pipeline', 'test', '--num-workers', '0',
                                '--descriptor', 'cls', '--out-dir',
                                str(out / 'test')])
    assert test['descriptor'] == 'cls'


def test_prototypes_tool_and_training_config(seg_config):
    path, out, _ = seg_config
    if not (out / 'hierarchy.json').exists():
        hierarchy_tool.main([str(path), '--num-images', '10',
                             '--num-workers', '0'])
    # force a hierarchy with enough groups for AP
    (out / 'hierarchy.json').write_text('{"starts": [0, 2]}')
    written = prototypes_tool.main([str(path), '--num-images', '8',
                                    '--num-workers', '0'])
    assert written == str(out / 'prototypes.pth')
    data = torch.load(written, weights_only=True)
    assert data['prototypes'].shape == (3, 32) and data['k'] == 3
    # the config now builds and trains one step on CPU
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from mmship.ship.offline import build_train_subset
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.testing.assert_close(model.backbone.prompter.prototypes,
                               data['prototypes'])
    assert model.backbone.prompter.starts == [0, 2]
    model.train()
    dataset, indices = build_train_subset(cfg, 2, 0)
    batch = pseudo_collate([dataset[i] for i in indices])
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    assert 'loss_pml' in losses and 'decode.loss_ce' in losses
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grads = [p.grad for p in model.backbone.prompter.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_prototypes_tool_refuses_k_above_descriptors(seg_config):
    path, out, _ = seg_config
    with pytest.raises(ValueError, match='K=20 prototypes from only 8'):
        prototypes_tool.main([str(path), '--num-images', '8', '--k', '20',
                              '--num-workers', '0', '--out',
                              str(out / 'x.pth')])
    # patch descriptors: 8 images x 4 patches
    got = prototypes_tool.main([str(path), '--num-images', '8', '--k', '20',
                                '--descriptor', 'patch',
                                '--patches-per-image', '4', '--num-workers',
                                '0', '--out', str(out / 'p.npy')])
    assert np.load(got).shape == (20, 32)


def test_tools_on_a_classification_config(cls_config):
    path, out, _ = cls_config
    info = hierarchy_tool.main([str(path), '--num-workers', '0'])
    assert info['num_images'] == 10 and info['descriptor'] == 'cls'
    assert (out / 'hierarchy.json').exists()
    got = prototypes_tool.main([str(path), '--k', '4', '--num-workers', '0'])
    a = torch.load(got, weights_only=True)['prototypes']
    b = torch.load(prototypes_tool.main(
        [str(path), '--k', '4', '--num-workers', '0', '--out',
         str(out / 'again.pth')]), weights_only=True)['prototypes']
    torch.testing.assert_close(a, b)  # deterministic for a seed


def test_missing_hierarchy_is_searched_at_start_of_training(seg_config,
                                                             tmp_path):
    """starts=None: tools/train.py runs the tool's search before building the
    model, saves it in the work dir, and a resumed run reuses it."""
    from mmship.ship.offline import fill_missing_hierarchy, search_hierarchy
    path, _, _ = seg_config
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.prompt.update(starts=None, ap=False, prototypes=None)
    cfg.ship_offline.num_images = 6
    work_dir = tmp_path / 'work'
    starts = fill_missing_hierarchy(cfg, str(path), str(work_dir))
    saved = work_dir / 'ship_hierarchy' / 'hierarchy.json'
    assert json.loads(saved.read_text())['starts'] == starts
    assert cfg.model.backbone.prompt.starts == starts
    # the same search as the offline tool, with the same settings
    tool = search_hierarchy(cfg, str(path), out_dir=str(tmp_path / 'tool'),
                            num_images=6, threshold=0.99,
                            descriptor='mean_patch', write=False)
    assert tool['starts'] == starts
    # resumed: reused from the work dir, not searched again
    (saved).write_text(json.dumps(dict(starts=[0, 3])))
    cfg.model.backbone.prompt.starts = None
    assert fill_missing_hierarchy(cfg, str(path), str(work_dir)) == [0, 3]
    # a config with starts set is left alone
    assert fill_missing_hierarchy(cfg, str(path), str(work_dir)) is None
