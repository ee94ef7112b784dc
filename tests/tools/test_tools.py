"""tools/train.py, --resume, tools/test.py, CPU DDP via dist_train.sh
(find_unused_parameters=False) and count_params, on the demo config with a
small demo set; plus the early errors on bad input."""
import os
import os.path as osp
import re
import sys

import pytest
import torch

from conftest import REPO, free_port, run_tool
from runs import CLS_CONFIG, logged_iters, short_run

CONFIG = 'configs/demo.py'


@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):
    """4 iterations, checkpoints at 2 and 4."""
    work = str(tmp_path_factory.mktemp('train') / 'work')
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir', work] +
                    short_run(demo_data, 4))
    return work, proc.stdout


def test_train(trained):
    work, out = trained
    assert logged_iters(out) == [1, 2, 3, 4]
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    assert 'mIoU' in out
    # the parameter table is logged at init
    assert 'backbone.prompter' in out and 'trainable:' in out


def test_resume_continues(trained, demo_data, tmp_path):
    work, _ = trained
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu',
                      weights_only=False)
    prompt_key = next(k for k in ckpt['state_dict'] if 'prompter' in k)
    # Resume the stopped run for 4 more iterations (auto: last_checkpoint).
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir', work,
                     '--resume'] + short_run(demo_data, 8))
    out = proc.stdout
    assert 'Weights only load failed' not in out
    assert 'resumed' in out.lower()
    assert logged_iters(out) == [5, 6, 7, 8], out[-3000:]
    new = torch.load(osp.join(work, 'iter_8.pth'), map_location='cpu',
                     weights_only=False)
    assert new['meta']['iter'] == 8
    # prompts kept training from the checkpoint
    assert not torch.equal(new['state_dict'][prompt_key],
                           ckpt['state_dict'][prompt_key])
    # explicit checkpoint path, into a fresh work dir
    other = str(tmp_path / 'from_iter2')
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir', other,
                     '--resume', osp.join(work, 'iter_2.pth')] +
                    short_run(demo_data, 3))
    assert logged_iters(proc.stdout) == [3]


def test_test_tool(trained, demo_data, tmp_path):
    work, _ = trained
    preds = tmp_path / 'preds'
    proc = run_tool(['python', 'tools/test.py', CONFIG,
                     osp.join(work, 'iter_4.pth'),
                     '--work-dir', str(tmp_path / 'test'),
                     '--out', str(preds)] + short_run(demo_data, 4))
    assert 'Test metrics' in proc.stdout and 'mIoU' in proc.stdout
    assert len(os.listdir(preds)) == 4  # one label map per val image


def test_ddp_cpu_two_processes(demo_data, tmp_path):
    work = str(tmp_path / 'ddp')
    proc = run_tool(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work] +
        short_run(demo_data, 3, ckpt_interval=3) +
        ['model_wrapper_cfg.type=MMDistributedDataParallel',
         'model_wrapper_cfg.find_unused_parameters=False'],
        env=dict(PYTHON=sys.executable, PORT=str(free_port()),
                 OMP_NUM_THREADS='1'))
    out = proc.stdout
    assert 'Distributed training: True' in out
    assert "dist_cfg: {'backend': 'gloo'}" in out
    # 4 validation images, batch 2, split over 2 processes: 1 batch each
    assert 'Iter(val) [1/1]' in out
    assert logged_iters(out)[-1] == 3
    assert osp.isfile(osp.join(work, 'iter_3.pth'))


def test_count_params(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'count_params', osp.join(REPO, 'tools/analysis/count_params.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([osp.join(REPO, CONFIG)])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines()
               if line.startswith('backbone.prompter'))
    # VPT-deep: 6 blocks x 10 prompts x 96 dims, all trainable
    assert row.split()[1:] == ['5,760', '5,760']
    assert 'trainable:' in out


# -- bad input: clear errors, nothing written --------------------------------
def test_missing_config_is_clear(tmp_path):
    proc = run_tool(['python', 'tools/train.py', 'configs/nope.py',
                     '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode != 0
    assert "Config file 'configs/nope.py' does not exist" in proc.stdout
    assert not (tmp_path / 'w').exists()


def test_work_dir_checks(tmp_path):
    from mmship.engine.launch import UsageError, check_work_dir
    config = tmp_path / 'cfgs' / 'a.py'
    config.parent.mkdir()
    config.write_text('x = 1\n')
    # the config's own folder: the merged dump would overwrite it
    with pytest.raises(UsageError, match='holds the config itself'):
        check_work_dir(str(config.parent), str(config))
    # a user file with the dump's name, no earlier run
    user = tmp_path / 'user'
    user.mkdir()
    (user / 'a.py').write_text('mine\n')
    with pytest.raises(UsageError, match='not from an earlier run'):
        check_work_dir(str(user), str(config))
    # checkpoints of another config
    run = tmp_path / 'run'
    (run / '20250101_000000').mkdir(parents=True)
    (run / 'b.py').write_text('')
    (run / 'iter_10.pth').write_text('')
    with pytest.raises(UsageError, match='another config'):
        check_work_dir(str(run), str(config))
    # an earlier run of the same config: --resume or --overwrite
    (run / 'b.py').rename(run / 'a.py')
    with pytest.raises(UsageError, match='--resume'):
        check_work_dir(str(run), str(config))
    check_work_dir(str(run), str(config), resume=True)
    check_work_dir(str(run), str(config), overwrite=True)
    check_work_dir(str(tmp_path / 'new'), str(config))
    (tmp_path / 'file').write_text('')
    with pytest.raises(UsageError, match='not a folder'):
        check_work_dir(str(tmp_path / 'file'), str(config))


def test_missing_resume_checkpoint_is_clear(tmp_path):
    proc = run_tool(['python', 'tools/train.py', CONFIG, '--work-dir',
                     str(tmp_path / 'w'), '--resume',
                     str(tmp_path / 'none.pth')], check=False)
    assert proc.returncode != 0
    assert 'does not exist' in proc.stdout


def test_safe_load_allows_only_history_buffer_methods(tmp_path):
    """Resume needs getattr(HistoryBuffer, 'mean') from mmengine's
    checkpoints; no other getattr passes the weights-only loader."""
    import pickle

    from mmengine.logging import HistoryBuffer

    import mmship  # noqa: F401  (allow-list installed at import)

    class Sneaky:
        def __reduce__(self):
            return getattr, (HistoryBuffer, '__class__')

    path = str(tmp_path / 'sneaky.pth')
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    buf = HistoryBuffer()
    buf.update(1.0)
    torch.save({'buf': buf}, path)
    assert torch.load(path)['buf'].mean() == 1.0


# -- the same tools on a classification (mmpretrain) config --------------------
def test_classification_train_resume_test(tmp_path):
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    for split, count in (('train', 4), ('val', 2)):
        for cls in ('a', 'b', 'c'):
            folder = tmp_path / 'data' / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(folder / f'{i}.png'),
                            rng.integers(0, 255, (32, 32, 3), np.uint8))
    config = tmp_path / 'tiny_cls.py'
    config.write_text(CLS_CONFIG.format(
        runtime=osp.join(REPO, 'configs/_base_/default_runtime_cls.py'),
        data=str(tmp_path / 'data')))
    work = str(tmp_path / 'work')
    run_tool(['python', 'tools/train.py', str(config), '--work-dir', work,
              '--cfg-options', 'train_cfg.max_epochs=1'])
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    proc = run_tool(['python', 'tools/train.py', str(config), '--work-dir',
                     work, '--resume'])
    assert 'Weights only load failed' not in proc.stdout
    assert re.search(r'Epoch\(train\)\s+\[2\]', proc.stdout)
    assert not re.search(r'Epoch\(train\)\s+\[1\]', proc.stdout)
    out = tmp_path / 'preds.pkl'
    proc = run_tool(['python', 'tools/test.py', str(config),
                     osp.join(work, 'epoch_2.pth'), '--work-dir',
                     str(tmp_path / 'test'), '--out', str(out)])
    assert 'Test metrics' in proc.stdout and 'accuracy/top1' in proc.stdout
    assert out.stat().st_size > 0
