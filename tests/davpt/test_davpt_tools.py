"""DA-VPT through the real tools on the demo set: tools/train.py with
DAVPTMappingHook (mapping before training, re-clustering, checkpoint, resume,
two CPU processes with find_unused_parameters=False) and
tools/analysis/davpt_class_mapping.py."""
import json
import os.path as osp
import re

import pytest
import torch

from conftest import REPO, free_port, run_tool

CONFIG = 'configs/davpt/davpt_vit-tiny_upernet_300it_demo-shapes-64x64.py'


def opts(demo_data, max_iters, recluster_at=2):
    out = [f'train_cfg.max_iters={max_iters}',
           f'train_cfg.val_interval={max_iters}',
           'default_hooks.checkpoint.interval=2',
           'default_hooks.logger.interval=1',
           'train_dataloader.batch_size=4', 'val_dataloader.batch_size=2',
           f'custom_hooks.0.recluster_from={recluster_at}',
           f'custom_hooks.0.recluster_interval={recluster_at}',
           'custom_hooks.0.max_images=16']
    for loader in ('train', 'val'):
        out += [f'{loader}_dataloader.dataset.data_root={demo_data}',
                f'{loader}_dataloader.num_workers=0',
                f'{loader}_dataloader.persistent_workers=False']
    return ['--cfg-options'] + out


def _mapping_lines(text):
    return re.findall(r'DA-VPT class-to-prompt mapping \(?([^):;]*)', text)


@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('davpt') / 'work')
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir', work] +
                    opts(demo_data, 4))
    return work, proc.stdout


def test_train_computes_and_reclusters_the_mapping(trained):
    work, out = trained
    assert _mapping_lines(out) == ['initial', 'iter_2']
    assert re.search(r'\(iter_2\).*; \d+ classes moved', out)
    assert 'loss_davpt_patch' in out and 'loss_davpt_cls' in out
    saved = json.load(open(osp.join(work, 'davpt_class_mapping.json')))
    assert saved['num_classes'] == 4 and saved['num_proxies'] == 2
    assert osp.isfile(osp.join(work, 'davpt_class_mapping_iter_2.json'))
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu',
                      weights_only=False)
    mapping = ckpt['state_dict']['backbone.prompter.class_to_proxy']
    assert mapping.tolist() == saved['mapping']


def test_resume_keeps_the_checkpoint_mapping(trained, demo_data):
    work, _ = trained
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir', work,
                     '--resume'] + opts(demo_data, 6, recluster_at=100))
    assert 'mapping: loaded with the checkpoint' in proc.stdout
    assert 'class means' not in proc.stdout


def test_two_cpu_processes(demo_data, tmp_path):
    proc = run_tool(['bash', 'tools/dist_train.sh', CONFIG, '2',
                     '--work-dir', str(tmp_path / 'w')] +
                    opts(demo_data, 4), env=dict(PORT=str(free_port())),
                    timeout=600)
    assert _mapping_lines(proc.stdout).count('initial') == 1  # rank 0 logs
    assert osp.isfile(tmp_path / 'w' / 'iter_4.pth')


def test_mapping_tool(demo_data, tmp_path):
    out = tmp_path / 'm.json'
    proc = run_tool(['python', 'tools/analysis/davpt_class_mapping.py',
                     CONFIG, '--out', str(out), '--images-per-class', '3',
                     '--num-workers', '0', '--cfg-options',
                     f'train_dataloader.dataset.data_root={demo_data}'])
    data = json.load(open(out))
    assert data['num_classes'] == 4 and len(data['mapping']) == 4
    assert sorted(sum(data['clusters'].values(), [])) == \
        sorted(['background', 'circle', 'rectangle', 'triangle'])
    assert all(n <= 3 for n in data['images_per_class'])
    assert '4 classes -> 2 proxies' in proc.stdout
    assert data['class_mean_norm'] == 'l2'          # the hook's default
    # the reference's layer-normalised class means
    out = tmp_path / 'layer.json'
    run_tool(['python', 'tools/analysis/davpt_class_mapping.py', CONFIG,
              '--out', str(out), '--images-per-class', '3',
              '--num-workers', '0', '--class-mean-norm', 'layer',
              '--cfg-options',
              f'train_dataloader.dataset.data_root={demo_data}'])
    assert json.load(open(out))['class_mean_norm'] == 'layer'


def test_mapping_tool_refuses_other_methods():
    proc = run_tool(['python', 'tools/analysis/davpt_class_mapping.py',
                     osp.join(REPO, 'configs/demo.py')], check=False)
    assert proc.returncode != 0
    assert 'needs a model whose backbone has a DAVPTPrompter' in proc.stdout
