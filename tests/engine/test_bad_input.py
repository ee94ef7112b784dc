"""Bad input stops with one clear message: configurations at build time,
and the tools' checks (checkpoints, data, non-finite losses), which leave
the user's files as they were."""
import hashlib
import os
import os.path as osp
import re

import pytest
import torch

from conftest import run_tool
from tiny import deep, seg_pair


def test_unknown_placement():
    with pytest.raises(ValueError, match="Unknown prompt placement 'deeep'"):
        seg_pair(prompt=dict(type='Prompter',
                             placements=[dict(kind='deeep', num_tokens=2)]))


def test_prompts_for_missing_block():
    with pytest.raises(ValueError, match=r'block\(s\) \[7\].*blocks 0..3'):
        seg_pair(prompt=dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=2, blocks=[0, 7])]))


@pytest.mark.parametrize('starts, msg', [
    ([0, 3, 2], 'strictly increasing'),
    ([0, 4], 'outside the backbone'),
    ([1, 2], 'begin with block 0'),
])
def test_bad_group_starts(starts, msg):
    with pytest.raises(ValueError, match=msg):
        seg_pair(prompt=dict(type='Prompter', placements=[
            dict(kind='group', num_tokens=2, starts=starts)]))


def test_image_size_not_multiple_of_patch():
    with pytest.raises(ValueError, match='not a multiple of the patch size'):
        seg_pair(img_size=36)


def test_trainable_pattern_that_matches_nothing():
    with pytest.raises(ValueError, match='match no backbone parameter'):
        seg_pair(prompt=deep(), trainable=['norm.*'])


def test_unknown_prompter_type():
    with pytest.raises(KeyError, match='VPTDeepest'):
        seg_pair(prompt=dict(type='VPTDeepest'))


# -- tools: every invalid setting stops with its message, nothing overwritten
CONFIG = 'configs/demo.py'


def demo_opts(data_root, max_iters=2, lr=None):
    opts = [f'train_cfg.max_iters={max_iters}',
            f'train_cfg.val_interval={max_iters}',
            'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1',
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
            'test_dataloader.batch_size=2']
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={data_root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    if lr is not None:
        opts.append(f'optim_wrapper.optimizer.lr={lr}')
    return ['--cfg-options'] + opts


def snapshot(folder):
    """{path: (sha1, mtime)} of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                out[path] = (hashlib.sha1(f.read()).hexdigest(),
                             os.stat(path).st_mtime_ns)
    return out


@pytest.fixture(scope='module')
def demo_model():
    from mmship.engine.launch import build_model, load_config
    cfg = load_config(CONFIG)
    return cfg, build_model(cfg)


def save_ckpt(path, model, cfg=None, **meta):
    if cfg is not None:
        meta['cfg'] = cfg.pretty_text
    torch.save(dict(state_dict=model.state_dict(), meta=meta), str(path))


def test_checkpoint_keys(demo_model):
    from mmship.engine.checks import check_checkpoint_keys
    from mmship.engine.launch import UsageError
    _, model = demo_model
    state = model.state_dict()
    check_checkpoint_keys(model, state)
    check_checkpoint_keys(model, {'module.' + k: v for k, v in state.items()})
    # another method's prompts (SHIP's) and no VPT-deep prompts
    other = {k: v for k, v in state.items() if 'prompter' not in k}
    other['backbone.prompter.sets.0'] = torch.zeros(3)
    with pytest.raises(UsageError, match=r'does not have: backbone\.'
                       r'prompter\.sets\.0.*lacks: backbone\.prompter'):
        check_checkpoint_keys(model, other, path='x.pth')
    bad = dict(state)
    key = next(k for k in state if 'prompter' in k)
    bad[key] = torch.zeros(1)
    with pytest.raises(UsageError, match='shapes that differ: ' + key):
        check_checkpoint_keys(model, bad)
    # prompt-only checkpoints: frozen keys may be absent, trained may not
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    trained_only = {k: v for k, v in state.items() if k in trained}
    check_checkpoint_keys(model, trained_only, prompt_only=True)
    with pytest.raises(UsageError, match='lacks: backbone'):
        check_checkpoint_keys(model, trained_only)
    with pytest.raises(UsageError, match='lacks: ' + key):
        check_checkpoint_keys(model, {k: v for k, v in trained_only.items()
                                      if k != key}, prompt_only=True)


def test_checkpoint_config(demo_model):
    from mmship.engine.checks import check_checkpoint_config
    from mmship.engine.launch import UsageError
    cfg, _ = demo_model
    meta = dict(cfg=cfg.pretty_text)
    check_checkpoint_config(cfg, meta)
    check_checkpoint_config(cfg, {})  # no saved config: keys decide
    other = cfg.copy()
    other.model.decode_head.num_classes = 7
    with pytest.raises(UsageError, match=r'model\.decode_head\.num_classes '
                       r'differ'):
        check_checkpoint_config(other, meta, 'x.pth')
    # None: filled at run time (SHIP's starts / prototypes)
    other.model.decode_head.num_classes = None
    check_checkpoint_config(other, meta)


def test_unreadable_checkpoints(demo_model, tmp_path):
    from mmship.engine.checks import (latest_readable_checkpoint,
                                      load_checkpoint_file)
    from mmship.engine.launch import UsageError
    cfg, model = demo_model
    save_ckpt(tmp_path / 'iter_2.pth', model, cfg)
    good = (tmp_path / 'iter_2.pth').read_bytes()
    (tmp_path / 'iter_4.pth').write_bytes(good[:len(good) // 2])
    with pytest.raises(UsageError, match=r"'.*iter_4\.pth' cannot be read"):
        load_checkpoint_file(str(tmp_path / 'iter_4.pth'))
    (tmp_path / 'list.pth').write_bytes(b'')
    torch.save([1], str(tmp_path / 'list.pth'))
    with pytest.raises(UsageError, match='holds a list'):
        load_checkpoint_file(str(tmp_path / 'list.pth'))
    assert latest_readable_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_2.pth')
    assert latest_readable_checkpoint(str(tmp_path / 'none')) is None


def test_data_checks(demo_data, tmp_path):
    from mmship.engine.checks import check_data
    from mmship.engine.launch import UsageError, load_config
    cfg = load_config(CONFIG, {'train_dataloader.dataset.data_root':
                               demo_data,
                               'val_dataloader.dataset.data_root': demo_data})
    check_data(cfg, ('train', 'val'))
    with pytest.raises(UsageError, match=r"data_root '.*nope' does not exist"
                       r'.*img_path>/xxx\.jpg.*seg_map_path>/xxx\.png'):
        check_data(load_config(CONFIG, {
            'train_dataloader.dataset.data_root': str(tmp_path / 'nope')}),
            ('train', ))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UsageError, match='is empty'):
        check_data(load_config(CONFIG, {
            'train_dataloader.dataset.data_root': str(tmp_path / 'empty')}),
            ('train', ))
    (tmp_path / 'other' / 'x').mkdir(parents=True)
    with pytest.raises(UsageError, match=r"no \*\.jpg images in .*"
                       r"img_path='images/training'"):
        check_data(load_config(CONFIG, {
            'train_dataloader.dataset.data_root': str(tmp_path / 'other')}),
            ('train', ))
    cfg.model.decode_head.num_classes = 5
    with pytest.raises(UsageError, match=r'head predicts 5 classes .* has 4'
                       r'.*num_classes=4'):
        check_data(cfg, ('train', ))


def test_classification_data_checks(tmp_path):
    from mmengine.config import Config

    from mmship.engine.checks import check_data
    from mmship.engine.launch import UsageError
    for cls in ('a', 'b'):
        (tmp_path / 'train' / cls).mkdir(parents=True)
        (tmp_path / 'train' / cls / '0.png').write_bytes(b'')
    cfg = Config(dict(
        default_scope='mmpretrain', model=dict(head=dict(num_classes=3)),
        train_dataloader=dict(dataset=dict(
            type='CustomDataset', data_root=str(tmp_path),
            data_prefix='train'))))
    with pytest.raises(UsageError, match=r'predicts 3 classes .* has 2'):
        check_data(cfg)
    cfg.train_dataloader.dataset.data_prefix = 'val'
    with pytest.raises(UsageError, match=r'no images in .*val.*one folder '
                       r'per class.*ann_file'):
        check_data(cfg)
    cfg.train_dataloader.dataset.ann_file = 'meta/train.txt'
    with pytest.raises(UsageError, match=r'ann_file .*train\.txt.* does not'):
        check_data(cfg)


def test_non_finite_loss_stops_training(demo_data, tmp_path):
    """lr=1e30: the loss is inf/NaN from iteration 2 on; iteration 1's
    checkpoint is the last good one, nothing after it is saved."""
    work = tmp_path / 'work'
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir',
                     str(work)] + demo_opts(demo_data, 4, lr=1e30),
                    check=False)
    assert proc.returncode != 0
    msg = re.search(r"error: Loss term '(.*?)' is (nan|inf|-inf) at "
                    r'iteration (\d+).*Last good checkpoint: (\S+)\.',
                    proc.stdout)
    assert msg, proc.stdout[-3000:]
    it = int(msg.group(3))
    good = work / f'iter_{it - 1}.pth'
    assert msg.group(4) == str(good)
    assert not (work / f'iter_{it}.pth').exists()
    # --resume without a file: a truncated newer checkpoint is skipped
    (work / 'iter_9.pth').write_bytes(good.read_bytes()[:999])
    before = snapshot(work)
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir',
                     str(work), '--resume'] + demo_opts(demo_data, it - 1))
    assert re.search(r"--resume: skipping .*iter_9\.pth: Checkpoint "
                     r"'.*iter_9\.pth' cannot be read", proc.stdout)
    assert f'Load checkpoint from {good}' in proc.stdout
    after = snapshot(work)  # the checkpoints are as they were
    assert all(after[f] == before[f] for f in before if f.endswith('.pth'))


def test_tools_refuse_bad_checkpoints_and_data(demo_model, demo_data,
                                               tmp_path):
    """test.py on a checkpoint of another config, a truncated one, and
    train.py on missing data: exit 1 with the message; the user's work dir,
    checkpoints and config are untouched."""
    cfg, model = demo_model
    user = tmp_path / 'user'
    user.mkdir()
    other = cfg.copy()
    other.model.decode_head.num_classes = 7
    save_ckpt(user / 'other.pth', model, other)
    save_ckpt(user / 'keys.pth', model, None)
    state = torch.load(str(user / 'keys.pth'))
    state['state_dict']['backbone.prompter.sets.0'] = torch.zeros(3)
    torch.save(state, str(user / 'keys.pth'))
    (user / 'cut.pth').write_bytes((user / 'other.pth').read_bytes()[:999])
    (user / 'demo.py').write_text("_base_ = ['x.py']\n")  # the user's
    before = snapshot(user)
    cases = [
        (['tools/test.py', CONFIG, str(user / 'other.pth')],
         r'other\.pth was trained with another model config: '
         r'model\.decode_head\.num_classes differ'),
        (['tools/test.py', CONFIG, str(user / 'cut.pth')],
         r"Checkpoint '.*cut\.pth' cannot be read"),
        (['tools/test.py', CONFIG, str(user / 'keys.pth'), '--tta'],
         r'keys\.pth does not fit the config\'s model \(keys the model does '
         r'not have: backbone\.prompter\.sets\.0'),
        (['tools/train.py', CONFIG, '--cfg-options',
          'train_dataloader.dataset.data_root=' + str(tmp_path / 'none')],
         r"data_root '.*none' does not exist; expected \(mmseg\)"),
    ]
    for args, pattern in cases:
        opts = demo_opts(demo_data) if args[0] == 'tools/test.py' else []
        proc = run_tool(['python'] + args + ['--work-dir',
                                             str(tmp_path / 'w')] + opts,
                        check=False)
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert re.search(pattern, proc.stdout), proc.stdout[-3000:]
    assert snapshot(user) == before
    assert not (tmp_path / 'w').exists()  # checked before anything is written


def test_checkpoint_keys_fill_a_pending_ship_prompter():
    """starts=None: the prompt sets come from the checkpoint's hierarchy, so
    the keys are checked by loading into a copy (the model stays pending)."""
    from mmship.engine.checks import check_checkpoint_keys
    from mmship.engine.launch import UsageError
    ship = dict(type='SHIPPrompter', starts=[0, 2, 3], num_tokens=3,
                ssp_tokens=2, ap_groups=2, ap_tokens=2, pml_tokens=3,
                prototypes=torch.randn(5, 32))
    _, trained = seg_pair(prompt=ship)
    _, pending = seg_pair(prompt=dict(ship, starts=None, prototypes=None))
    check_checkpoint_keys(pending, trained.state_dict())
    assert pending.prompter.pending
    _, vpt = seg_pair(prompt=deep())
    with pytest.raises(UsageError, match='does not have: prompter'):
        check_checkpoint_keys(pending, vpt.state_dict())


def test_non_finite_loss_names_the_term(tmp_path):
    """A broken term (DA-VPT's) is named, not only the total it spoils."""
    from types import SimpleNamespace

    from mmship.engine.hooks import NonFiniteLossError, NonFiniteLossHook
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(work_dir=str(tmp_path), iter=6)
    nan = torch.tensor(float('nan'))
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.)))
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.),
                                                  acc_seg=nan))
    with pytest.raises(NonFiniteLossError,
                       match=r"'loss_davpt_cls' is nan at iteration 7.*"
                       r'none \(none was saved yet\)'):
        hook.after_train_iter(runner, 0, outputs=dict(
            loss=nan, decode_loss_ce=torch.tensor(1.), loss_davpt_cls=nan))
