"""Inference with prompted models: mmseg's init_model / inference_model /
MMSegInferencer and mmpretrain's ImageClassificationInferencer on saved
checkpoints, tools/inference.py, tools/analysis/visualize_attention.py
(SHIP selections) and the TensorBoard backend.  Random weights, tiny
configs, in-process."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import REPO
from runs import CLS_CONFIG

SEG_CONFIG = osp.join(REPO, 'configs/demo.py')


def _tool(path):
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save(config, path, fill_prototypes=False):
    from mmship.engine.launch import build_model, load_config
    cfg = load_config(config)
    model = build_model(cfg)
    if fill_prototypes:
        model.backbone.prompter.prototypes.normal_()
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=cfg.pretty_text,
                              dataset_meta=dict(classes=['a', 'b', 'c', 'd'],
                                                palette=[[0, 0, 0]] * 4))),
               str(path))
    return str(path)


@pytest.fixture(scope='module')
def seg_ckpt(tmp_path_factory):
    return _save(SEG_CONFIG, tmp_path_factory.mktemp('seg') / 'iter_1.pth')


@pytest.fixture(scope='module')
def image(demo_data):
    return osp.join(demo_data, 'images/validation/shape_00000.jpg')


def test_mmseg_apis(seg_ckpt, image):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    model = init_model(SEG_CONFIG, seg_ckpt, device='cpu')
    result = inference_model(model, image)
    assert result.pred_sem_seg.data.shape[-2:] == (64, 64)
    assert model.dataset_meta['classes'] == ['a', 'b', 'c', 'd']
    inferencer = MMSegInferencer(model=SEG_CONFIG, weights=seg_ckpt,
                                 device='cpu')
    out = inferencer(image)
    assert np.array_equal(out['predictions'],
                          result.pred_sem_seg.data[0].numpy())


def test_inference_tool_segmentation(seg_ckpt, image, tmp_path):
    import cv2
    _tool('tools/inference.py').main(
        [SEG_CONFIG, seg_ckpt, image, '--out-dir', str(tmp_path / 'out')])
    labels = cv2.imread(str(tmp_path / 'out/shape_00000_labels.png'),
                        cv2.IMREAD_UNCHANGED)
    assert labels.shape == (64, 64) and labels.max() < 4
    assert osp.getsize(tmp_path / 'out/shape_00000_overlay.png') > 0
    with pytest.raises(SystemExit, match='not empty'):
        _tool('tools/inference.py').main(
            [SEG_CONFIG, seg_ckpt, image, '--out-dir', str(tmp_path / 'out')])


def test_classification_inferencer_and_tool(tmp_path, capsys):
    import cv2
    from mmpretrain.apis import ImageClassificationInferencer
    config = tmp_path / 'tiny_cls.py'
    config.write_text(CLS_CONFIG.format(
        runtime=osp.join(REPO, 'configs/_base_/default_runtime_cls.py'),
        data=str(tmp_path / 'data')))
    ckpt = _save(str(config), tmp_path / 'epoch_1.pth')
    img = str(tmp_path / 'x.png')
    cv2.imwrite(img, np.random.default_rng(0).integers(0, 255, (40, 48, 3),
                                                       np.uint8))
    pred = ImageClassificationInferencer(str(config), pretrained=ckpt,
                                         device='cpu')(img)[0]
    assert pred['pred_scores'].shape == (3, )
    _tool('tools/inference.py').main(
        [str(config), ckpt, img, '--out-dir', str(tmp_path / 'out'),
         '--topk', '2'])
    top = json.load(open(tmp_path / 'out/predictions.json'))[img]
    assert [p['label'] for p in top] == \
        list(np.argsort(pred['pred_scores'])[::-1][:2])
    assert np.isclose(top[0]['score'], pred['pred_scores'].max(), atol=1e-5)
    assert img in capsys.readouterr().out


SHIP_DEMO = """
_base_ = [{base!r}]
model = dict(backbone=dict(prompt=dict(
    _delete_=True, type='SHIPPrompter', starts=[0, 2, 4], num_tokens=2,
    ssp_tokens=1, ap_groups=2, ap_tokens=3, pml_tokens=4, prototypes=5)))
"""


def test_visualize_attention_ship(tmp_path, image):
    config = tmp_path / 'ship_demo.py'
    config.write_text(SHIP_DEMO.format(base=SEG_CONFIG))
    ckpt = _save(str(config), tmp_path / 'iter_1.pth', fill_prototypes=True)
    tool = _tool('tools/analysis/visualize_attention.py')
    from mmship.engine.inference import init_prompted_model
    from mmship.engine.launch import load_config
    cfg = load_config(str(config))
    model = init_prompted_model(cfg, ckpt)
    maps = tool.attention_maps(model, cfg, image)
    assert len(maps['plain']) == len(maps['prompted']) == 6
    assert maps['plain'][0].shape == (8, 8)
    for name in ('plain', 'prompted'):  # softmax rows over the patches
        assert all(torch.all(a > 0) for a in maps[name])
    # CLS attention is over the instance keys: equal at block 0 (same
    # inputs), different once prompts have changed the patch tokens
    assert torch.allclose(maps['plain'][0], maps['prompted'][0])
    assert not torch.allclose(maps['plain'][1], maps['prompted'][1])
    # AP at the group starts 2 and 4, from blocks 1 and 3's attention
    assert [b for b, _ in maps['ap']] == [2, 4]
    for block, idx in maps['ap']:
        expect = maps['prompted'][block - 1].flatten().topk(3).indices + 1
        assert sorted(idx.tolist()) == sorted(expect.tolist())
    assert maps['pml'][0] == 5 and len(maps['pml'][1]) == 4
    out = str(tmp_path / 'attn.png')
    tool.main([str(config), ckpt, image, '--out', out, '--blocks', '1', '5'])
    import cv2
    assert cv2.imread(out).shape[1] > 300
    with pytest.raises(SystemExit, match='exists'):
        tool.main([str(config), ckpt, image, '--out', out])
    with pytest.raises(SystemExit, match=r'blocks 0\.\.5'):
        tool.main([str(config), ckpt, image, '--out', out + '.2.png',
                   '--blocks', '6'])


def test_tensorboard_backend_is_one_config_line(tmp_path):
    """docs/inference.md: one line in a config turns TensorBoard on."""
    from mmengine.registry import VISUALIZERS

    from mmship.engine.launch import load_config
    config = tmp_path / 'tb.py'
    config.write_text(
        f'_base_ = [{SEG_CONFIG!r}]\n'
        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')])\n")
    cfg = load_config(str(config))
    vis_cfg = dict(cfg.visualizer, save_dir=str(tmp_path / 'vis'),
                   name='tb_test')
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.add_scalars(dict(loss=1.0), step=1)
    visualizer.close()
    events = [f for _, _, files in os.walk(tmp_path / 'vis') for f in files
              if f.startswith('events.out.tfevents')]
    assert events


def test_test_tool_show_dir_and_tta(seg_ckpt, demo_data, tmp_path):
    """tools/test.py --tta --show-dir, as mmseg's: flip TTA over the demo
    val images, painted predictions in the folder."""
    from conftest import run_tool
    from runs import short_run
    show = tmp_path / 'show'
    proc = run_tool(['python', 'tools/test.py', SEG_CONFIG, seg_ckpt,
                     '--work-dir', str(tmp_path / 'w'), '--tta',
                     '--show-dir', str(show)] + short_run(demo_data, 1) +
                    ['default_hooks.visualization.interval=1'])
    assert 'Test metrics' in proc.stdout and 'mIoU' in proc.stdout
    painted = [f for _, _, files in os.walk(show) for f in files
               if f.endswith('.png')]
    assert len(painted) == 4, painted
