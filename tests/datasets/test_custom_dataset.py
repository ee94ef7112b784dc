"""docs/custom_dataset.md, run as written: its two configs (segmentation
folder with its own classes and palette, classification folder in
mmpretrain's CustomDataset layout) train for a few iterations on generated
images, then its prediction snippets run.  The configs' `mmship::` bases are
named by their path in this repository (the docs' in-a-clone form; the
`mmship::` form itself is tested from a wheel in test_packaging.py), and the
classification run swaps ViT-B for a tiny ViT in a config that inherits the
documented one."""
import os
import os.path as osp
import re

import cv2
import numpy as np

from conftest import REPO, run_tool

DOC = osp.join(REPO, 'docs', 'custom_dataset.md')
SMALL = ['train_dataloader.batch_size=2', 'val_dataloader.batch_size=2']
for _loader in ('train', 'val', 'test'):
    SMALL += [f'{_loader}_dataloader.num_workers=0',
              f'{_loader}_dataloader.persistent_workers=False']

TINY_CLS = '''_base_ = ['./my_cls_doc.py']
# the test's stand-in for ViT-B: 32 px, 2 blocks of width 32, random init
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=2,
                            num_heads=2, feedforward_channels=64),
                  img_size=32, patch_size=8, init_cfg=None),
    head=dict(in_channels=32))
_train = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=32),
          dict(type='PackInputs')]
train_dataloader = dict(dataset=dict(pipeline=_train))
val_dataloader = dict(dataset=dict(pipeline=_train))
test_dataloader = val_dataloader
'''


def _blocks(text, lang):
    return re.findall(rf'```{lang}\n(.*?)```', text, flags=re.S)


def _make_data(root, rng):
    colours = {1: (128, 64, 128), 2: (0, 0, 142)}
    for split, names in (('train', range(4)), ('val', (100, 101))):
        os.makedirs(osp.join(root, 'my_seg', 'img_dir', split))
        os.makedirs(osp.join(root, 'my_seg', 'ann_dir', split))
        for i in names:
            mask = np.zeros((64, 64), np.uint8)
            x, y = rng.integers(0, 32, 2)
            mask[y:y + 24, :] = 1                  # a road band
            mask[y + 4:y + 16, x:x + 16] = 2       # a car on it
            mask[0, :] = 255                       # ignored pixels
            img = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
            for c, colour in colours.items():
                img[mask == c] = colour
            cv2.imwrite(osp.join(root, 'my_seg', 'img_dir', split,
                                 f'{i:04d}.jpg'), img)
            cv2.imwrite(osp.join(root, 'my_seg', 'ann_dir', split,
                                 f'{i:04d}.png'), mask)
        for k, cls in enumerate(('bird', 'cat', 'dog')):
            os.makedirs(osp.join(root, 'my_cls', split, cls))
            for i in names:
                img = np.full((40, 40, 3), 80 * k, np.uint8)
                img += rng.integers(0, 30, img.shape).astype(np.uint8)
                cv2.imwrite(osp.join(root, 'my_cls', split, cls,
                                     f'{i:04d}.jpg'), img)


def test_custom_dataset_doc(tmp_path):
    text = open(DOC).read()
    configs = {b.splitlines()[0][2:]: b for b in _blocks(text, 'python')
               if b.startswith('# my_')}
    assert set(configs) == {'my_seg_config.py', 'my_cls_config.py'}
    in_clone = osp.join(REPO, 'configs') + '/'
    (tmp_path / 'my_seg_config.py').write_text(
        configs['my_seg_config.py'].replace('mmship::', in_clone))
    (tmp_path / 'my_cls_doc.py').write_text(
        configs['my_cls_config.py'].replace('mmship::', in_clone))
    (tmp_path / 'my_cls_config.py').write_text(TINY_CLS)
    _make_data(str(tmp_path / 'data'), np.random.default_rng(0))
    env = dict(PYTHONPATH=REPO)
    train = osp.join(REPO, 'tools', 'train.py')

    out = run_tool(['python', train, 'my_seg_config.py', '--cfg-options',
                    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                    'default_hooks.checkpoint.interval=2'] + SMALL,
                   cwd=str(tmp_path), env=env).stdout
    assert 'road' in out and 'car' in out and 'mIoU' in out  # its classes
    out = run_tool(['python', train, 'my_cls_config.py', '--cfg-options',
                    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1'] +
                   SMALL, cwd=str(tmp_path), env=env).stdout
    assert 'accuracy/top1' in out

    predict = [b for b in _blocks(text, 'python') if 'last_checkpoint' in b]
    assert len(predict) == 2
    # two scripts (one host library's default scope per process)
    out = run_tool(['python', '-c', predict[0]], cwd=str(tmp_path),
                   env=env).stdout
    assert "('background', 'road', 'car') (64, 64)" in out
    out = run_tool(['python', '-c', predict[1]], cwd=str(tmp_path),
                   env=env).stdout
    assert re.search(r'(bird|cat|dog) 0\.\d+', out), out
