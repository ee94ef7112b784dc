"""Every config's backbone takes its pretrained checkpoint key by key.

The real weights are not reachable here, so the timm architecture each config
names is built with random weights and offered through the same loader: a
config whose backbone arguments (patch bias, layer scale, final norm, depth)
do not fit its checkpoint fails here instead of at the start of a GPU run.
"""
import os.path as osp

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmship.core.checkpoint as ckpt_module
from conftest import experiment_configs

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = [osp.join(ROOT, p) for p in experiment_configs()]
_STATES = {}


def timm_state(name, **kw):
    key = (name, tuple(sorted(kw.items())))
    if key not in _STATES:
        _STATES[key] = timm.create_model(name, pretrained=False,
                                         **kw).state_dict()
    return _STATES[key]


def test_there_are_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_backbone_loads_its_checkpoint(path, tmp_path, monkeypatch):
    cfg = Config.fromfile(path)
    init = cfg.model.backbone.get('init_cfg') or {}
    source = init.get('checkpoint', '') if isinstance(init, dict) else ''
    if source.startswith('timm:'):
        monkeypatch.setattr(ckpt_module, '_read_timm_hub', timm_state)
    elif source.endswith('dinov2_vits14_fp32.pth'):
        # the bench weights: timm's DINOv2 ViT-S/14 layout at its 518 px grid
        fake = tmp_path / 'dinov2.pth'
        torch.save(timm_state('vit_small_patch14_dinov2', img_size=518), fake)
        monkeypatch.setenv('MMSHIP_BENCH', str(tmp_path))
        cfg = Config.fromfile(path)
        cfg.model.backbone.init_cfg.checkpoint = str(fake)
    else:
        pytest.skip(f'no pretrained checkpoint named ({source!r})')
    # SHIP configs build pending (no hierarchy / prototypes files needed)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('default_scope') == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        from mmseg.registry import MODELS
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()  # raises on any missing/unexpected/misshapen key
