"""tools/analysis/search_hparams.py: the search-space checks, the val-only
rule (refused before anything is written), a tiny real study on the demo
config (2 trials at a time), its resumption, and failed trials."""
import contextlib
import importlib.util
import io
import json
import os
import os.path as osp
import pathlib
import re

import pytest
from mmengine.config import Config

from conftest import REPO, run_tool
from mmship.engine.launch import UsageError
from mmship.engine.search import (check_grid, check_val_only, load_space,
                                  parse_cfg_options, read_metric)

CONFIG = 'configs/demo.py'
CIFAR = 'configs/bench/davpt_dinov2-s14_cifar10-1k.py'
TOOL = 'tools/analysis/search_hparams.py'


def space_file(tmp_path, text, name='space.py'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def demo_cfg(options=()):
    cfg = Config.fromfile(CONFIG)
    opts = parse_cfg_options(list(options))
    cfg.merge_from_dict(opts)
    return cfg, opts


# --- the search space --------------------------------------------------------
GOOD = ("space = {'optim_wrapper.optimizer.lr': dict(type='float', "
        "low=1e-4, high=1e-2, log=True),\n"
        "         'model.backbone.prompt.placements.0.num_tokens': "
        "dict(type='int', low=2, high=6, step=2),\n"
        "         'model.decode_head.dropout_ratio': dict(type='categorical',"
        " choices=[0.0, 0.1])}\n")


def test_space_accepted(tmp_path):
    cfg, opts = demo_cfg()
    space = load_space(space_file(tmp_path, GOOD), cfg, CONFIG, opts)
    assert space['optim_wrapper.optimizer.lr'] == dict(
        type='float', low=1e-4, high=1e-2, log=True)
    assert space['model.backbone.prompt.placements.0.num_tokens']['step'] == 2
    grid = check_grid({k: v for k, v in space.items()
                       if v['type'] != 'float'})
    assert grid == {'model.backbone.prompt.placements.0.num_tokens': [2, 4, 6],
                    'model.decode_head.dropout_ratio': [0.0, 0.1]}
    with pytest.raises(UsageError, match='--grid enumerates.*'
                       r'optim_wrapper\.optimizer\.lr is a float range'):
        check_grid(space)


@pytest.mark.parametrize('text, message', [
    ("space = {'optim_wrapper.optimizer.lr': dict(type='uniform', low=0, "
     "high=1)}", "'optim_wrapper.optimizer.lr': unknown type 'uniform'"),
    ("space = {'optim_wrapper.optimizer.lr': dict(type='float', low=1e-2, "
     "high=1e-4)}", 'bounds low=0.01 > high=0.0001'),
    ("space = {'optim_wrapper.optimizer.lr': dict(type='float', low=0, "
     "high=1, log=True)}", r'log=True needs low > 0'),
    ("space = {'optim_wrapper.optimizer.lr': dict(type='float', low=0, "
     "high=1, choices=[1])}", 'unknown field.*choices'),
    ("space = {'model.backbone.prompt.placements.0.num_tokens': "
     "dict(type='int', low=1, high=4.5)}", '`high` must be an integer'),
    ("space = {'model.decode_head.dropout_ratio': dict(type='categorical', "
     "choices=[])}", 'non-empty list `choices`'),
    ("space = {'model.decode_head.dropout_ratio': dict(type='categorical', "
     "choices=[[0.1, 0.2]])}", 'choice .* is a list'),
    ("space = {'model.backbone.prompt.dropuot': dict(type='float', low=0, "
     "high=0.5)}", r"'model\.backbone\.prompt\.dropuot' does not exist in "
     r"configs/demo\.py: model\.backbone\.prompt has no 'dropuot' \(did "
     r"you mean dropout\?\).*--cfg-options model\.backbone\.prompt\."
     r"dropuot=<default>"),
    ("space = {'model.backbone.prompt.placements.1.num_tokens': dict(type="
     "'int', low=1, high=4)}", r'placements` is a list of 1; .1. is not an '
     r'index'),
    ("space = {'optim_wrapper.optimizer.momentum': dict(type='float', "
     "low=0.8, high=0.99)}", "optim_wrapper.optimizer has no 'momentum'"),
    ("space = {'test_dataloader.batch_size': dict(type='int', low=1, "
     "high=4)}", 'tune on val only.*touches `test_dataloader`'),
    ("space = {'val_dataloader.dataset.data_prefix.img_path': dict(type="
     "'categorical', choices=['images/validation', 'images/training'])}",
     'changes `val_dataloader`'),
    ("space = {'randomness.seed': dict(type='int', low=0, high=3)}",
     'use --seeds'),
    ("space = {'model.decode_head.dropout_ratio': dict(type='categorical', "
     "choices=['a,b'])}", "would reach tools/train.py as \\['a', 'b'\\]"),
    ("spaces = {}", 'must define a non-empty dict `space`'),
])
def test_space_errors(tmp_path, text, message):
    cfg, opts = demo_cfg()
    with pytest.raises(UsageError, match=message):
        load_space(space_file(tmp_path, text), cfg, CONFIG, opts)


def test_space_and_options_overlap(tmp_path):
    cfg, opts = demo_cfg(['optim_wrapper.optimizer.lr=0.01'])
    with pytest.raises(UsageError, match='also set by --cfg-options'):
        load_space(space_file(tmp_path, GOOD), cfg, CONFIG, opts)


# --- val only ----------------------------------------------------------------
def test_val_only_accepts_val_splits():
    raw = Config.fromfile(CONFIG)
    check_val_only(raw, raw, CONFIG)  # test_dataloader = val_dataloader
    cifar = Config.fromfile(CIFAR)
    check_val_only(cifar, cifar, CIFAR)  # val200.txt; test.txt apart
    # a location shared with train is not a split name (pytest tmp dirs)
    cfg, _ = demo_cfg(
        [f'{k}_dataloader.dataset.data_root=/tmp/test_search0/demo'
         for k in ('train', 'val')])
    check_val_only(cfg, raw, CONFIG)


@pytest.mark.parametrize('options, message', [
    (['val_dataloader.dataset.data_prefix.img_path=images/test'],
     'names a test split.*images/test'),
    (['val_dataloader.dataset.data_prefix.img_path=img_dir/testing',
      'val_dataloader.dataset.data_prefix.seg_map_path=ann_dir/testing'],
     'names a test split.*img_dir/testing'),
    (['val_dataloader.dataset.data_root=data/Test2017'],
     'names a test split'),
])
def test_val_only_refuses_demo(options, message):
    cfg, _ = demo_cfg(options)
    with pytest.raises(UsageError, match='tune on val only: .*' + message):
        check_val_only(cfg, Config.fromfile(CONFIG), CONFIG)


def test_val_only_refuses_cifar_test_txt():
    raw = Config.fromfile(CIFAR)
    cfg = raw.copy()
    cfg.merge_from_dict({'val_dataloader.dataset.ann_file': 'test.txt'})
    with pytest.raises(UsageError, match='tune on val only.*test.txt'):
        check_val_only(cfg, raw, CIFAR)
    cfg = raw.copy()
    cfg.merge_from_dict({'val_dataloader.dataset.split': 'test'})
    with pytest.raises(UsageError, match="split='test'"):
        check_val_only(cfg, raw, CIFAR)


def test_val_only_symlink_and_redirect(tmp_path):
    """A val folder that is a link to the test folder; val pointed at a
    test split that is not called test."""
    (tmp_path / 'test').mkdir()
    os.symlink(tmp_path / 'test', tmp_path / 'holdout')
    raw = Config.fromfile(CIFAR)
    cfg = raw.copy()
    cfg.merge_from_dict({'train_dataloader.dataset.data_root':
                         str(tmp_path),
                         'val_dataloader.dataset.data_root': str(tmp_path),
                         'val_dataloader.dataset.ann_file': 'holdout'})
    with pytest.raises(UsageError, match=r'holdout \(-> .*/test\)'):
        check_val_only(cfg, raw, CIFAR)
    # a config whose test split is final.txt: val pointed at it is refused
    raw.merge_from_dict({'test_dataloader.dataset.ann_file': 'final.txt'})
    check_val_only(raw, raw, CIFAR)
    cfg = raw.copy()
    cfg.merge_from_dict({'val_dataloader.dataset.ann_file': 'final.txt'})
    with pytest.raises(UsageError, match='the data of test_dataloader, '
                       'which the config file keeps apart from val'):
        check_val_only(cfg, raw, CIFAR)


def test_read_metric(tmp_path):
    logs = tmp_path / '20260101_000000' / 'vis_data'
    logs.mkdir(parents=True)
    (logs / 'scalars.json').write_text(
        '{"lr": 0.1, "loss": 1.0, "step": 1}\n'
        '{"aAcc": 50.0, "mIoU": 20.0, "step": 2}\n'
        '{"lr": 0.1, "loss": 0.5, "step": 3}\n'
        '{"aAcc": 60.0, "mIoU": 30.5, "step": 4}\n')
    assert read_metric(str(tmp_path), 'mIoU') == (30.5, None)
    value, why = read_metric(str(tmp_path), 'accuracy/top1')
    assert value is None and 'validation logged aAcc, mIoU' in why


# --- the tool ----------------------------------------------------------------
def _tool():
    spec = importlib.util.spec_from_file_location('search_hparams',
                                                  osp.join(REPO, TOOL))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def search(argv):
    """The tool, run in this process (its trainings are subprocesses): saves
    the seconds of importing mmship again.  Returns (exit code, output)."""
    out, code, cwd = io.StringIO(), 0, os.getcwd()
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out):
            _tool()(argv)
    except SystemExit as err:
        code = err.code
    finally:
        os.chdir(cwd)
    if isinstance(code, str):
        return 1, out.getvalue() + code
    return code or 0, out.getvalue()


def test_cli_refuses_before_writing(tmp_path):
    work = tmp_path / 'search'
    space = space_file(tmp_path, "space = {'optim_wrapper.optimizer.lr': "
                       "dict(type='float', low=1e-4, high=1e-2, log=True)}")
    proc = run_tool(['python', TOOL, CIFAR, '--space', space, '--trials',
                     '2', '--work-dir', str(work), '--cfg-options',
                     'val_dataloader.dataset.ann_file=test.txt'],
                    check=False)
    assert proc.returncode != 0
    assert 'error: tune on val only' in proc.stdout and 'test.txt' in \
        proc.stdout, proc.stdout[-2000:]
    assert not work.exists()
    code, out = search([CONFIG, '--space', space, '--trials', '2',
                        '--work-dir', str(work), '--cfg-options',
                        'test_dataloader.batch_size=1'])
    assert code == 1
    assert "tune on val only: --cfg-options key 'test_dataloader." \
        "batch_size' touches `test_dataloader`" in out, out[-2000:]
    code, out = search([CONFIG, '--space', space + 'x', '--trials', '2',
                        '--work-dir', str(work)])
    assert code == 1 and 'does not exist' in out
    assert not work.exists()


def demo_options(demo_data, iters=2):
    opts = [f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            'default_hooks.logger.interval=1',
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.visualization.draw=False',
            'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4']
    for loader in ('train', 'val'):
        opts += [f'{loader}_dataloader.dataset.data_root={demo_data}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return ['--cfg-options'] + opts


SPACE = ("space = {'optim_wrapper.optimizer.lr': dict(type='float', "
         "low=1e-4, high=1e-2, log=True),\n"
         "         'model.backbone.prompt.placements.0.num_tokens': dict("
         "type='int', low=2, high=6, step=2)}\n")


def table_rows(work):
    text = open(osp.join(work, 'trials.md')).read()
    return [line for line in text.splitlines()
            if re.match(r'\| \d+\*? \|', line)]


def load_trials(work):
    import optuna
    return optuna.load_study(study_name='demo',
                             storage=f'sqlite:///{work}/study.db').trials


@pytest.fixture(scope='module')
def study(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('search')
    work = str(tmp / 'work')
    space = space_file(tmp, SPACE)
    argv = [CONFIG, '--space', space, '--parallel', '2', '--seeds', '0',
            '1', '--work-dir', work] + demo_options(demo_data)
    code, out = search(argv + ['--trials', '2'])
    assert code == 0, out
    return work, argv, out


def test_study(study):
    work, _, out = study
    trials = load_trials(work)
    assert [t.state.name for t in trials] == ['COMPLETE', 'COMPLETE']
    for t in trials:
        # each seed's mIoU is read from its own run; the objective is the
        # mean over the seeds
        values = []
        for seed in (0, 1):
            value, _ = read_metric(osp.join(
                work, 'trials', f'{t.number:03d}', f'seed{seed}'), 'mIoU')
            assert t.user_attrs[f'seed{seed}'] == value
            values.append(value)
            # the trial's params and the seed reached tools/train.py
            cmd = open(t.user_attrs['logs'][str(seed)]).readline()
            lr = t.params['optim_wrapper.optimizer.lr']
            assert f' optim_wrapper.optimizer.lr={lr!r} ' in cmd
            assert cmd.rstrip().endswith(f' randomness.seed={seed}')
            assert not [n for n in os.listdir(osp.join(
                work, 'trials', f'{t.number:03d}', f'seed{seed}'))
                if n.endswith('.pth')]  # checkpoints removed
        assert t.value == pytest.approx(sum(values) / 2)
        assert 1e-4 <= t.params['optim_wrapper.optimizer.lr'] <= 1e-2
        assert t.params['model.backbone.prompt.placements.0.num_tokens'] in \
            (2, 4, 6)
        # --parallel 2: the two seeds of a trial ran at the same time
        (s0, e0), (s1, e1) = t.user_attrs['run_times'].values()
        assert s0 < e1 and s1 < e0
    rows = table_rows(work)
    assert len(rows) == 2 and all('COMPLETE' in r for r in rows)
    assert '| trial | optim_wrapper.optimizer.lr | model.backbone.prompt.' \
        'placements.0.num_tokens | seed 0 | seed 1 | mean | state | ' \
        'seconds |' in out
    best = max(trials, key=lambda t: t.value)
    assert f'| {best.number}* |' in open(osp.join(work, 'trials.md')).read()
    cfg = Config.fromfile(osp.join(work, 'best_config.py'))
    assert cfg.optim_wrapper.optimizer.lr == \
        best.params['optim_wrapper.optimizer.lr']
    assert cfg.model.backbone.prompt.placements[0].num_tokens == \
        best.params['model.backbone.prompt.placements.0.num_tokens']
    assert cfg.train_cfg.max_iters == 2  # --cfg-options are in it too
    params = json.load(open(osp.join(work, 'best_params.json')))
    assert params['trial'] == best.number and params['value'] == best.value
    assert params['params'] == best.params


def test_study_resumes(study):
    work, argv, _ = study
    code, out = search(argv + ['--trials', '3'])
    assert code == 0 and '1 trial(s) to run (2 finished)' in out, out
    assert [t.state.name for t in load_trials(work)] == ['COMPLETE'] * 3
    assert [int(r.split('|')[1].strip(' *')) for r in table_rows(work)] == \
        [0, 1, 2]
    code, out = search(argv + ['--trials', '3'])
    assert code == 0 and 'already holds 3 finished trials' in out
    # another space or config does not mix into the study
    other = space_file(pathlib.Path(osp.dirname(work)),
                       SPACE.replace('high=6', 'high=8'), 'other.py')
    i = argv.index('--space')
    code, out = search(argv[:i + 1] + [other] + argv[i + 2:] +
                       ['--trials', '4'])
    assert code == 1 and 'changed: the search space' in out, out[-2000:]
    # argv ends with --cfg-options: one more fixed option
    code, out = search(argv + ['optim_wrapper.optimizer.weight_decay=0.02',
                               '--trials', '4'])
    assert code == 1 and 'changed: the config' in out, out[-2000:]
    assert len(load_trials(work)) == 3


def test_failed_trials_grid(demo_data, tmp_path):
    """Trials that fail (here: stopped by --timeout) are recorded with their
    logs; --grid enumerates the categorical grid and caps --trials."""
    work = str(tmp_path / 'work')
    space = space_file(tmp_path, "space = {'model.decode_head.dropout_ratio"
                       "': dict(type='categorical', choices=[0.0, 0.1])}")
    code, out = search([CONFIG, '--space', space, '--trials', '5', '--grid',
                        '--parallel', '2', '--timeout', '0.5',
                        '--work-dir', work] + demo_options(demo_data))
    assert code == 1, out[-3000:]
    assert 'the grid has 2 points; running 2 trials' in out
    assert 'no trial completed' in out
    trials = load_trials(work)
    assert [t.state.name for t in trials] == ['FAIL', 'FAIL']
    assert sorted(t.params['model.decode_head.dropout_ratio']
                  for t in trials) == [0.0, 0.1]
    for t in trials:
        assert 'stopped after --timeout 0.5 s' in t.user_attrs['errors']['0']
        assert osp.isfile(t.user_attrs['logs']['0'])
    text = open(osp.join(work, 'trials.md')).read()
    assert 'Failed trials:' in text and 'seed0.log' in text
    assert not osp.exists(osp.join(work, 'best_config.py'))


def test_interrupted_trial_runs_again(demo_data, tmp_path):
    """A trial left RUNNING by a killed search is marked interrupted, not
    counted, and its params run first when the command is run again."""
    import optuna
    from optuna.distributions import FloatDistribution
    work = tmp_path / 'work'
    work.mkdir()
    study = optuna.create_study(study_name='demo', direction='maximize',
                                storage=f'sqlite:///{work}/study.db')
    stale = study.ask({'optim_wrapper.optimizer.lr': FloatDistribution(
        1e-4, 1e-2, log=True)})
    space = space_file(tmp_path, "space = {'optim_wrapper.optimizer.lr': "
                       "dict(type='float', low=1e-4, high=1e-2, log=True)}")
    code, out = search([CONFIG, '--space', space, '--trials', '1',
                        '--timeout', '0.5', '--work-dir', str(work)] +
                       demo_options(demo_data))
    assert 'trial 0 was interrupted; its params run again' in out, out
    assert '1 trial(s) to run (0 finished)' in out
    trials = load_trials(work)
    assert [t.state.name for t in trials] == ['FAIL', 'FAIL']
    assert trials[0].user_attrs['interrupted']
    assert not trials[1].user_attrs.get('interrupted')
    assert trials[1].params == stale.params
    assert '| 0 | ' in out and 'INTERRUPTED' in out


def test_stops_after_failures_in_row(demo_data, tmp_path):
    """A setting every trial fails with (here: --timeout) stops the search
    after --max-failures failed trials in a row, not after --trials."""
    work = str(tmp_path / 'work')
    space = space_file(tmp_path, "space = {'optim_wrapper.optimizer.lr': "
                       "dict(type='float', low=1e-4, high=1e-2, log=True)}")
    code, out = search([CONFIG, '--space', space, '--trials', '6',
                        '--max-failures', '2', '--timeout', '0.5',
                        '--work-dir', work] + demo_options(demo_data))
    assert code == 1 and '2 trials failed in a row' in out, out[-3000:]
    assert [t.state.name for t in load_trials(work)] == ['FAIL', 'FAIL']
