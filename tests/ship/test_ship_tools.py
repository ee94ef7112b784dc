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

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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


def test_hierarchy_tool_reports_degeneracy_and_num_groups(seg_config,
                                                          capsys):
    path, out, _ = seg_config
    common = [str(path), '--num-images', '6', '--num-workers', '0']
    # threshold 1: every affinity is below it -> one group per block
    info = hierarchy_tool.main(common + ['--threshold', '1.0', '--out-dir',
                                         str(out / 'deg')])
    text = capsys.readouterr().out
    assert info['starts'] == [0, 1, 2, 3]
    assert 'adjacent-block affinities S[i, i+1]' in text
    for i, a in enumerate(info['adjacent_affinity']):
        assert f'{i}-{i + 1}: {a:.3f}' in text
    assert 'WARNING: SHIP hierarchy degenerate: every block is its own ' \
        'group (4 groups)' in text and 'num_groups' in text
    assert info['warning'] in text
    # a tiny threshold: one group
    info = hierarchy_tool.main(common + ['--threshold', '0.001', '--out-dir',
                                         str(out / 'one')])
    assert info['starts'] == [0] and 'all 4 blocks form one group' in \
        capsys.readouterr().out
    # --num-groups: the threshold that gives that many groups, recorded
    info = hierarchy_tool.main(common + ['--num-groups', '2', '--out-dir',
                                         str(out / 'g2')])
    text = capsys.readouterr().out
    saved = json.loads((out / 'g2' / 'hierarchy.json').read_text())
    assert len(saved['starts']) == 2 and saved['num_groups'] == 2
    lo, hi = saved['threshold_interval']
    assert lo < saved['threshold'] <= hi
    assert 'picked for num_groups=2' in text
    assert f'threshold {saved["threshold"]:g}' in text
    assert saved['warning'] is None and 'WARNING' not in text
    from mmship.ship.hierarchy import greedy_hierarchy
    S = np.load(out / 'g2' / 'affinity.npy')
    assert greedy_hierarchy(S, saved['threshold']) == saved['starts']
    # the config's ship_offline.num_groups is the tool's default
    info = hierarchy_tool.main(common + ['--out-dir', str(out / 'g3'),
                                         '--cfg-options',
                                         'ship_offline.num_groups=3'])
    assert len(info['starts']) == 3 and info['num_groups'] == 3
    # impossible counts fail clearly
    with pytest.raises(SystemExit, match='num_groups must lie in 1..4'):
        hierarchy_tool.main(common + ['--num-groups', '5', '--out-dir',
                                      str(out / 'g5')])


def test_missing_offline_state_is_computed_at_start_of_training(seg_config,
                                                                tmp_path):
    """starts / prototypes None, or files that do not exist: tools/train.py
    computes them with the tools' code before building the model, saves them
    in the work dir, and a resumed run reuses them."""
    from mmship.ship.offline import (apply_ship_offline, compute_prototypes,
                                     offline_needs, prepare_ship_offline,
                                     search_hierarchy)
    path, _, _ = seg_config
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.prompt.update(starts=None, prototypes=None)
    cfg.ship_offline.update(num_images=6, num_groups=2)
    assert offline_needs(cfg) == ['hierarchy', 'prototypes']
    work_dir = tmp_path / 'work'
    result = prepare_ship_offline(cfg, str(path), str(work_dir))
    folder = work_dir / 'ship_offline'
    saved = json.loads((folder / 'hierarchy.json').read_text())
    assert saved['starts'] == result['starts'] and len(result['starts']) == 2
    assert saved['num_groups'] == 2
    assert (folder / 'affinity.npy').exists()
    protos = torch.load(folder / 'prototypes_k3.pth', weights_only=True)
    torch.testing.assert_close(protos['prototypes'], result['prototypes'])
    assert cfg.model.backbone.prompt.starts == result['starts']
    assert cfg.model.backbone.prompt.prototypes == 3
    assert offline_needs(cfg) == []
    # the same computations as the offline tools, with the same settings
    tool = search_hierarchy(cfg, str(path), num_images=6, threshold=0.99,
                            descriptor='mean_patch', num_groups=2,
                            write=False)
    assert tool['starts'] == result['starts']
    tool = compute_prototypes(cfg, str(path), k=3, num_images=6,
                              write=False)
    torch.testing.assert_close(tool['prototypes'], result['prototypes'])
    # the built model gets the prototypes
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    apply_ship_offline(model, result)
    torch.testing.assert_close(model.backbone.prompter.prototypes,
                               result['prototypes'])
    assert model.backbone.prompter.starts == result['starts']

    # resumed: reused from the work dir, not computed again
    (folder / 'hierarchy.json').write_text(json.dumps(dict(starts=[0, 3])))
    torch.save(dict(prototypes=torch.ones(3, 32)), folder / 'prototypes_k3.pth')
    cfg.model.backbone.prompt.update(starts=str(tmp_path / 'no.json'),
                                     prototypes=str(tmp_path / 'no.pth'))
    again = prepare_ship_offline(cfg, str(path), str(work_dir))
    assert again['starts'] == [0, 3]
    assert torch.equal(again['prototypes'], torch.ones(3, 32))
    # reuse=False (--overwrite) computes them again
    cfg.model.backbone.prompt.update(starts=None, prototypes=None)
    fresh = prepare_ship_offline(cfg, str(path), str(work_dir), reuse=False)
    assert fresh['starts'] == result['starts']
    # a config with both set is left alone
    assert prepare_ship_offline(cfg, str(path), str(work_dir)) is None


# -- one command: tools/train.py, --resume, tools/test.py, mmseg's APIs -------
SHIP_DEMO = """_base_ = ['{repo}/configs/demo.py']
model = dict(backbone=dict(prompt=dict(
    _delete_=True, type='SHIPPrompter', starts=None, prototypes=None,
    num_tokens=2, ssp_tokens=2, ap_groups=1, ap_tokens=2, pml_tokens=2,
    prompt_update='bypass')))
ship_offline = dict(num_images=8, k=3, num_groups=2, descriptor='mean_patch')
"""


@pytest.fixture(scope='module')
def ship_trained(demo_data, tmp_path_factory):
    """A tiny SHIP config without hierarchy or prototypes, 2 iterations."""
    from conftest import run_tool
    from runs import short_run
    tmp = tmp_path_factory.mktemp('ship_train')
    config = tmp / 'ship_demo.py'
    config.write_text(SHIP_DEMO.format(repo=ROOT))
    work = tmp / 'work'
    proc = run_tool(['python', 'tools/train.py', str(config), '--work-dir',
                     str(work)] + short_run(demo_data, 2))
    return config, work, proc.stdout


def test_ship_trains_in_one_command(ship_trained):
    config, work, out = ship_trained
    folder = work / 'ship_offline'
    saved = json.loads((folder / 'hierarchy.json').read_text())
    assert len(saved['starts']) == 2 and saved['num_groups'] == 2
    protos = torch.load(folder / 'prototypes_k3.pth',
                        weights_only=True)['prototypes']
    assert protos.shape == (3, 96)
    # logged
    assert 'searching it with the frozen backbone' in out
    assert 'adjacent-block affinities' in out
    assert f'starts={saved["starts"]}' in out
    assert 'SHIP attribute prototypes: K-means K=3' in out
    # the checkpoint holds both
    state = torch.load(work / 'iter_2.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    assert state['backbone.prompter.hierarchy_starts'].tolist() == \
        saved['starts']
    torch.testing.assert_close(state['backbone.prompter.prototypes'], protos)


def test_ship_resume_reuses_the_offline_state(ship_trained, demo_data):
    from conftest import run_tool
    from runs import logged_iters, short_run
    config, work, _ = ship_trained
    folder = work / 'ship_offline'
    stamps = {f: (folder / f).stat().st_mtime_ns
              for f in ('hierarchy.json', 'prototypes_k3.pth')}
    proc = run_tool(['python', 'tools/train.py', str(config), '--work-dir',
                     str(work), '--resume'] + short_run(demo_data, 3))
    out = proc.stdout
    assert logged_iters(out) == [3]
    assert 'SHIP hierarchy of this work dir reused' in out
    assert 'SHIP attribute prototypes of this work dir reused' in out
    assert 'searching' not in out and 'computing them' not in out
    assert stamps == {f: (folder / f).stat().st_mtime_ns for f in stamps}


def _val_miou(text):
    import re
    return re.findall(r'mIoU: ([\d.]+)', text)


def test_ship_checkpoint_rebuilds_without_offline_files(ship_trained,
                                                        demo_data, tmp_path):
    """tools/test.py, mmseg.apis.init_model + inference_model and
    MMSegInferencer rebuild the trained model from config + checkpoint with
    the offline files gone."""
    import shutil

    from conftest import run_tool
    from runs import short_run
    config, work, out = ship_trained
    keep = tmp_path / 'kept'
    shutil.copytree(work / 'ship_offline', keep)
    ckpt = tmp_path / 'iter_2.pth'
    shutil.copy(work / 'iter_2.pth', ckpt)
    shutil.rmtree(work / 'ship_offline')
    try:
        proc = run_tool(['python', 'tools/test.py', str(config), str(ckpt),
                         '--work-dir', str(tmp_path / 'test')] +
                        short_run(demo_data, 2))
    finally:
        shutil.copytree(keep, work / 'ship_offline')
    assert 'Test metrics' in proc.stdout
    # the validation at the end of training ran the trained model on the
    # same images (the demo's test set is its validation set)
    assert _val_miou(proc.stdout)[-1:] == _val_miou(out)[-1:] != []

    from mmseg.apis import MMSegInferencer, inference_model, init_model
    cfg = Config.fromfile(str(config))
    for loader in ('train', 'val', 'test'):
        cfg[f'{loader}_dataloader'].dataset.data_root = demo_data
    img = osp.join(demo_data, 'images', 'validation',
                   sorted(__import__('os').listdir(
                       osp.join(demo_data, 'images', 'validation')))[0])
    model = init_model(cfg, str(ckpt), device='cpu')
    prompter = model.backbone.prompter
    assert prompter.pending == []
    got = inference_model(model, img).seg_logits.data
    # the trained model: built with the hierarchy and prototypes files
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS
    hierarchy = json.loads((keep / 'hierarchy.json').read_text())['starts']
    full = cfg.copy()
    full.model.backbone.prompt.update(
        starts=hierarchy, prototypes=str(keep / 'prototypes_k3.pth'))
    init_default_scope('mmseg')
    reference = MODELS.build(full.model)
    assert prompter.starts == reference.backbone.prompter.starts
    fresh = inference_model(_as_init_model(reference, full), img)
    assert not torch.allclose(fresh.seg_logits.data, got)  # untrained
    load_checkpoint(reference, str(ckpt), map_location='cpu')
    want = inference_model(_as_init_model(reference, full),
                           img).seg_logits.data
    torch.testing.assert_close(got, want)
    # MMSegInferencer from the config file and the checkpoint
    inferencer = MMSegInferencer(model=str(config), weights=str(ckpt),
                                 device='cpu')
    pred = inferencer(img, return_datasamples=True)
    torch.testing.assert_close(pred.seg_logits.data, want)


def _as_init_model(model, cfg):
    model.cfg = cfg
    model.eval()
    return model


def test_ship_ddp_computes_on_rank_0_and_broadcasts(demo_data, tmp_path):
    """Two CPU processes (gloo): rank 0 computes, rank 1 receives; DDP with
    find_unused_parameters=False checks that both built the same prompts."""
    import sys

    from conftest import free_port, run_tool
    from runs import short_run
    config = tmp_path / 'ship_demo.py'
    config.write_text(SHIP_DEMO.format(repo=ROOT))
    work = tmp_path / 'ddp'
    proc = run_tool(
        ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
         str(work)] + short_run(demo_data, 1, ckpt_interval=1) +
        ['model_wrapper_cfg.type=MMDistributedDataParallel',
         'model_wrapper_cfg.find_unused_parameters=False'],
        env=dict(PYTHON=sys.executable, PORT=str(free_port()),
                 OMP_NUM_THREADS='1'))
    out = proc.stdout
    assert 'Distributed training: True' in out
    starts = json.loads((work / 'ship_offline' / 'hierarchy.json')
                        .read_text())['starts']
    assert f'[rank 1] SHIP: hierarchy and prototypes received from rank 0: ' \
        f'starts={starts}' in out
    state = torch.load(work / 'iter_1.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    assert state['backbone.prompter.hierarchy_starts'].tolist() == starts


def test_count_params_of_a_ship_run(ship_trained, capsys):
    """A config that leaves the hierarchy open counts its group prompt sets
    from a run's work dir (and says so when none is given)."""
    config, work, _ = ship_trained
    count = _tool_at('count_params', 'tools/analysis/count_params.py')
    count.main([str(config)])
    out = capsys.readouterr().out
    assert 'the SHIP hierarchy is not set' in out
    count.main([str(config), '--work-dir', str(work)])
    out = capsys.readouterr().out
    assert 'not set' not in out
    row = next(line for line in out.splitlines()
               if line.startswith('backbone.prompter'))
    # 2 groups x 2 SIP + 2 SSP + 1 AP set x 2 tokens, 96 dims
    assert row.split()[1] == f'{(2 * 2 + 2 + 2) * 96:,}'


def _tool_at(name, path):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
