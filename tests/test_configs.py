"""Every config under configs/ builds its model, and one training step on a
small input reaches every trainable parameter (what DDP with
find_unused_parameters=False needs) and no frozen one.  No weights are
loaded: init_weights is not called."""
import os.path as osp

import pytest
import torch

from conftest import REPO, experiment_configs
from mmship.engine.launch import build_model, load_config

CONFIGS = experiment_configs()


def test_configs_found():
    assert 'configs/demo.py' in CONFIGS
    assert len(CONFIGS) >= 5


def _fill_offline_state(model):
    """After the build (with no offline file on disk): SHIP prompters are
    pending -- they wait for a hierarchy and prototypes from a checkpoint or
    from the start of training -- and get stand-ins here; empty prototype
    buffers get random prototypes; a round-robin class-to-prompt mapping
    where one is computed by a hook at the start of training (DA-VPT)."""
    from mmship.ship.method import SHIPPrompter
    for module in model.modules():
        if isinstance(module, SHIPPrompter):
            if 'hierarchy' in module.pending:
                module.set_hierarchy([0, 2, 4, 6, 8])
            if 'prototypes' in module.pending:
                module.set_prototypes(torch.randn(16, module.embed_dims))
            assert module.pending == []
        protos = getattr(module, 'prototypes', None)
        if isinstance(protos, torch.Tensor) and not protos.abs().sum() > 0:
            protos.normal_()
        if getattr(module, 'mapping_ready', True) is False:
            module.set_mapping(torch.arange(module.num_classes) %
                               module.num_proxies)


def _seg_batch(num_classes, size=64, batch=2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        s = SegDataSample(metainfo=dict(img_shape=(size, size),
                                        ori_shape=(size, size),
                                        pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, size, size)))
        samples.append(s)
    return torch.randn(batch, 3, size, size), samples


def _cls_batch(num_classes, size=64, batch=2):
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i % num_classes)
               for i in range(batch)]
    return torch.randn(batch, 3, size, size), samples


#: model configs already stepped (aliases repeat their target's model).
_STEPPED = {}


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_and_trains_a_step(path, tmp_path, monkeypatch):
    """Built with no pretrained weights (init_cfg=None) from an empty
    folder: no file written by an offline tool can be found, so every config
    must build without them."""
    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(osp.join(REPO, path))
    assert 'mmship' in cfg.custom_imports['imports']
    cfg.model.backbone.init_cfg = None
    if cfg.model.get('fast_head'):
        # the compiled heads: dynamo's capture and AOTAutograd's backward as
        # on a GPU, without inductor's CPU kernel build (a minute a model)
        cfg.model.fast_head = dict(backend='aot_eager')
    key = (cfg.default_scope, repr(cfg.model.to_dict()))
    if key in _STEPPED:
        return  # same model as an already tested config
    _STEPPED[key] = path
    from mmship.ship.offline import offline_needs
    needs = offline_needs(cfg)
    model = build_model(cfg)
    # what the config leaves to the start of training is pending
    assert getattr(getattr(model.backbone, 'prompter', None), 'pending',
                   []) == needs
    _fill_offline_state(model)
    backbone = model.backbone
    # a 4 x 4 patch grid: small, and enough patches for the methods that
    # pick the top-k patches
    size = 4 * backbone.patch_size
    if cfg.default_scope == 'mmseg':
        inputs, samples = _seg_batch(model.decode_head.num_classes, size)
    else:
        inputs, samples = _cls_batch(model.head.num_classes, size)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, 'nothing to train'
    prompter = getattr(backbone, 'prompter', None)
    if prompter is not None:
        assert any(p.requires_grad for p in prompter.parameters()), \
            'the prompter has no trainable parameter'
    if getattr(backbone, 'freeze_backbone', False):
        import fnmatch
        patterns = list(getattr(backbone, 'trainable', []))
        leaked = [n for n, p in backbone.named_parameters()
                  if p.requires_grad and not n.startswith('prompter.')
                  and not any(fnmatch.fnmatch(n, pat) for pat in patterns)]
        assert not leaked, f'frozen backbone trains {leaked[:5]}'

    model.train()
    losses = model(inputs, samples, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = sorted(n for n, p in model.named_parameters()
                     if p.requires_grad and p.grad is None)
    assert not no_grad, f'trainable but unused (DDP would fail): {no_grad}'

    model.eval()
    with torch.no_grad():
        out = model(inputs, samples, mode='predict')
    assert len(out) == inputs.shape[0]
