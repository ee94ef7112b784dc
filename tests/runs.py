"""Short training runs the tool tests share: the demo config's options for
a few iterations on a small demo set, and a tiny classification config."""
import re


def short_run(demo_data, max_iters, ckpt_interval=2):
    opts = [f'train_cfg.max_iters={max_iters}',
            f'train_cfg.val_interval={max_iters}',
            f'default_hooks.checkpoint.interval={ckpt_interval}',
            'default_hooks.checkpoint.max_keep_ckpts=-1',
            'default_hooks.logger.interval=1',
            'train_dataloader.batch_size=4', 'val_dataloader.batch_size=2',
            'test_dataloader.batch_size=2']
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={demo_data}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return ['--cfg-options'] + opts


def logged_iters(text):
    return [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/', text)]


#: a tiny mmpretrain config; ``.format(runtime=..., data=...)``
CLS_CONFIG = """
_base_ = [{runtime!r}]
model = dict(
    type='PromptedImageClassifier',
    backbone=dict(
        type='PromptedViT',
        prompt=dict(type='Prompter',
                    placements=[dict(kind='shallow', num_tokens=4)]),
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32, patch_size=8, out_type='cls_token'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=3, mean=[127.5] * 3, std=[127.5] * 3,
                         to_rgb=True)
pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=32),
            dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={data!r},
                 data_prefix='train', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={data!r},
                 data_prefix='val', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
val_cfg = dict()
test_cfg = dict()
"""
