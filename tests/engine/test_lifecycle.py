"""Checkpoint lifecycle on the demo config with a frozen backbone from a
checkpoint (init_cfg Pretrained): prompt-only checkpoints, resume after a
SIGKILL bit for bit (prompt dropout on), frozen tensors untouched, the
backbone hash check, export to a safetensors adapter and merge back into a
full checkpoint that mmseg's init_model loads."""
import importlib.util
import json
import os
import os.path as osp

import pytest
import torch

from conftest import REPO, run_tool
from runs import short_run

TESTS = osp.join(REPO, 'tests')
ENV = dict(PYTHONPATH=os.pathsep.join([REPO, TESTS]))


def _config(tmp, backbone):
    """The demo config, backbone from ``backbone``, with the kill hook
    (inactive unless MMSHIP_TEST_KILL_AT is set: all runs share one
    config)."""
    path = osp.join(tmp, 'lc_demo.py')
    with open(path, 'w') as f:
        f.write(f'''_base_ = [{osp.join(REPO, 'configs/demo.py')!r}]
custom_imports = dict(imports=['mmship', 'sigkill_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='SigkillAfterIterHook')]
model = dict(backbone=dict(init_cfg=dict(
    _delete_=True, type='Pretrained', checkpoint={backbone!r})))
''')
    return path


def _backbone_file(path, seed):
    from mmship.engine.launch import build_model, load_config
    torch.manual_seed(seed)
    model = build_model(load_config(osp.join(REPO, 'configs/demo.py')))
    torch.save({k: v for k, v in model.backbone.state_dict().items()
                if not k.startswith('prompter.')}, path)
    return path


@pytest.fixture(scope='module')
def runs(demo_data, tmp_path_factory):
    """An uninterrupted 6-iteration run (full checkpoints: the config
    switch), and one SIGKILLed right after its checkpoint at iteration 3
    then resumed with --resume (prompt-only checkpoints, the default)."""
    tmp = str(tmp_path_factory.mktemp('lifecycle'))
    backbone = _backbone_file(osp.join(tmp, 'backbone.pth'), seed=1)
    config = _config(tmp, backbone)
    opts = short_run(demo_data, 6, ckpt_interval=3)
    ref, cut = osp.join(tmp, 'ref'), osp.join(tmp, 'cut')
    run_tool(['python', 'tools/train.py', config, '--work-dir', ref] + opts +
             ['full_checkpoints=True'], env=ENV)
    killed = run_tool(['python', 'tools/train.py', config, '--work-dir', cut]
                      + opts, env=dict(ENV, MMSHIP_TEST_KILL_AT='3'),
                      check=False)
    assert killed.returncode == -9, killed.stdout[-3000:]  # SIGKILL
    assert not osp.exists(osp.join(cut, 'iter_4.pth'))
    resumed = run_tool(['python', 'tools/train.py', config, '--work-dir',
                        cut, '--resume'] + opts, env=ENV)
    assert 'Random states restored' in resumed.stdout
    return dict(tmp=tmp, backbone=backbone, config=config, ref=ref, cut=cut,
                opts=opts)


def _scalars(work):
    """{step: losses and accuracies} of every scalars.json under a work dir
    (a resumed run writes a second log folder)."""
    steps = {}
    for stamp in sorted(os.listdir(work)):
        path = osp.join(work, stamp, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            with open(path) as f:
                for line in f:
                    row = json.loads(line)
                    if 'loss' in row:
                        steps[row['step']] = {k: v for k, v in row.items()
                                              if 'loss' in k or 'acc' in k}
    return steps


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def _tool(name, argv):
    """Run tools/<name>.py in this process (no interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)


def test_resume_after_sigkill_is_bit_exact(runs):
    ref, cut = _scalars(runs['ref']), _scalars(runs['cut'])
    assert sorted(ref) == list(range(1, 7))
    assert ref == cut
    full = _load(osp.join(runs['ref'], 'iter_6.pth'))['state_dict']
    resumed = _load(osp.join(runs['cut'], 'iter_6.pth'))['state_dict']
    for key, value in resumed.items():
        assert torch.equal(value, full[key]), key


def test_checkpoint_contents(runs):
    from mmship.engine.launch import build_model, load_config
    from mmship.engine.lifecycle import frozen_keys
    ckpt = _load(osp.join(runs['cut'], 'iter_6.pth'))
    meta = ckpt['mmship']
    assert meta['content'] == 'prompts'
    assert meta['backbone']['source'] == runs['backbone']
    assert {'python', 'numpy', 'torch'} <= set(meta['rng'])
    assert {'optimizer', 'param_schedulers'} <= set(ckpt)
    model = build_model(load_config(runs['config']))
    frozen = frozen_keys(model)
    assert frozen and not set(frozen) & set(ckpt['state_dict'])
    # everything else is kept: prompts, neck, heads, BN statistics
    assert set(model.state_dict()) - set(frozen) == set(ckpt['state_dict'])
    full = _load(osp.join(runs['ref'], 'iter_6.pth'))
    assert full['mmship']['content'] == 'full'
    assert set(full['state_dict']) == set(model.state_dict())
    assert full['mmship']['backbone'] == meta['backbone']


def test_frozen_means_frozen(runs):
    """Every frozen tensor equals the backbone file after training, every
    trainable one moved (since iteration 3)."""
    from mmship.engine.launch import build_model, load_config
    start = _load(osp.join(runs['ref'], 'iter_3.pth'))['state_dict']
    end = _load(osp.join(runs['ref'], 'iter_6.pth'))['state_dict']
    backbone = torch.load(runs['backbone'])
    model = build_model(load_config(runs['config']))
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(end[name], start[name]), name
        else:
            assert torch.equal(end[name], start[name]), name
            assert torch.equal(end[name],
                               backbone[name[len('backbone.'):]]), name


def test_test_tool_and_hash_check(runs, tmp_path):
    ckpt = osp.join(runs['cut'], 'iter_6.pth')
    proc = run_tool(['python', 'tools/test.py', runs['config'], ckpt,
                     '--work-dir', str(tmp_path / 'ok')] + runs['opts'],
                    env=ENV)
    assert 'Test metrics' in proc.stdout
    other = _backbone_file(str(tmp_path / 'other.pth'), seed=2)
    proc = run_tool(['python', 'tools/test.py', runs['config'], ckpt,
                     '--work-dir', str(tmp_path / 'bad')] + runs['opts'] +
                    [f'model.backbone.init_cfg.checkpoint={other}'],
                    env=ENV, check=False)
    assert proc.returncode != 0
    assert 'trained on a different frozen backbone' in proc.stdout
    assert 'Traceback' not in proc.stdout


def test_export_merge_init_model(runs, tmp_path):
    from mmseg.apis import init_model
    from safetensors.torch import load_file
    ckpt = osp.join(runs['cut'], 'iter_6.pth')
    adapter = str(tmp_path / 'prompts.safetensors')
    _tool('export_prompts', [runs['config'], ckpt, '--out', adapter])
    with open(tmp_path / 'prompts.json') as f:
        sidecar = json.load(f)
    assert sidecar['backbone'] == _load(ckpt)['mmship']['backbone']
    assert 'SigkillAfterIterHook' in sidecar['config']
    trained = _load(ckpt)['state_dict']
    tensors = load_file(adapter)
    assert tensors.keys() == trained.keys()
    # a full checkpoint exports the same adapter
    from_full = str(tmp_path / 'from_full.safetensors')
    _tool('export_prompts', [runs['config'],
                             osp.join(runs['ref'], 'iter_6.pth'), '--out',
                             from_full])
    assert all(torch.equal(v, tensors[k])
               for k, v in load_file(from_full).items())
    merged = str(tmp_path / 'merged.pth')
    _tool('merge_prompts', [runs['config'], adapter, '--out', merged])
    model = init_model(runs['config'], merged, device='cpu')
    state = model.state_dict()
    for key, value in trained.items():
        assert torch.equal(state[key], value), key
    assert model.dataset_meta['classes'][0] == 'background'
    # a full checkpoint merges with its own backbone
    from_ref = str(tmp_path / 'from_ref.pth')
    _tool('merge_prompts', [runs['config'],
                            osp.join(runs['ref'], 'iter_6.pth'), '--out',
                            from_ref])
    ref_state = _load(from_ref)['state_dict']
    assert all(torch.equal(v, ref_state[k])
               for k, v in _load(merged)['state_dict'].items())
    sizes = {name: osp.getsize(path) for name, path in (
        ('full', osp.join(runs['ref'], 'iter_6.pth')), ('prompt-only', ckpt),
        ('adapter', adapter), ('merged', merged))}
    print('sizes (bytes):', sizes)
    assert sizes['adapter'] < sizes['merged'] < sizes['full']
    # inference takes the prompt-only checkpoint and the adapter as they are
    # (the frozen backbone from init_cfg, its hash checked)
    from mmship.engine.inference import init_prompted_model
    from mmship.engine.launch import load_config
    for source in (ckpt, adapter):
        rebuilt = init_prompted_model(load_config(runs['config']), source)
        rebuilt_state = rebuilt.state_dict()
        for key, value in state.items():
            assert torch.equal(rebuilt_state[key], value), (source, key)


def test_prompt_only_needs_a_pretrained_backbone():
    from types import SimpleNamespace

    from mmship.engine.launch import build_model, load_config
    from mmship.engine.lifecycle import PromptCheckpointHook
    # the demo config's backbone is randomly initialised (no init_cfg)
    runner = SimpleNamespace(model=build_model(
        load_config(osp.join(REPO, 'configs/demo.py'))))
    PromptCheckpointHook().before_train(runner)  # default: full checkpoints
    with pytest.raises(ValueError, match='full_checkpoints = True'):
        PromptCheckpointHook(full=False).before_train(runner)
