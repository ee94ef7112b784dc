"""tools/slurm_train.sh and tools/slurm_test.sh with a fake ``srun`` on PATH
(no Slurm here): it records its arguments, sets the environment srun gives a
task and runs the command as the only task (--launcher slurm on the CPU)."""
import os
import os.path as osp
import sys

from conftest import free_port, run_tool

FAKE_SRUN = r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$SRUN_LOG"
while [ $# -gt 0 ]; do
  case "$1" in
    -p) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 SLURM_NODELIST=node001
exec "$@"
'''


def _data_opts(demo_data):
    opts = ['--cfg-options']
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={demo_data}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return opts


def test_slurm_train_and_test(demo_data, tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'srun').chmod(0o755)
    log = tmp_path / 'srun_args.txt'
    env = dict(PATH=os.pathsep.join([str(bin_dir), osp.dirname(
        sys.executable), os.environ.get('PATH', '')]), SRUN_LOG=str(log),
        GPUS='1', GPUS_PER_NODE='1', CPUS_PER_TASK='2',
        SRUN_ARGS='--time=10 --exclusive', MASTER_PORT=str(free_port()))
    work = str(tmp_path / 'work')
    proc = run_tool(['bash', 'tools/slurm_train.sh', 'debug', 'mmship-job',
                     'configs/demo.py', work] + _data_opts(demo_data) + [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2'], env=env)
    args = log.read_text().splitlines()
    assert args[:10] == ['-p', 'debug', '--job-name=mmship-job',
                         '--gres=gpu:1', '--ntasks=1', '--ntasks-per-node=1',
                         '--cpus-per-task=2', '--kill-on-bad-exit=1',
                         '--time=10', '--exclusive']
    assert args[10:12] == [sys.executable, '-u']
    assert args[12].endswith('tools/train.py')
    assert args[13:16] == ['configs/demo.py', f'--work-dir={work}',
                           '--launcher=slurm']
    assert osp.isfile(osp.join(work, 'iter_2.pth')), proc.stdout[-3000:]
    assert 'launcher: slurm' in proc.stdout and 'mIoU' in proc.stdout

    proc = run_tool(['bash', 'tools/slurm_test.sh', 'debug', 'mmship-test',
                     'configs/demo.py', osp.join(work, 'iter_2.pth'),
                     '--work-dir', str(tmp_path / 'test')] +
                    _data_opts(demo_data), env=env)
    args = log.read_text().splitlines()
    assert args[:3] == ['-p', 'debug', '--job-name=mmship-test']
    assert args[12].endswith('tools/test.py')
    assert args[13:16] == ['configs/demo.py', osp.join(work, 'iter_2.pth'),
                           '--launcher=slurm']
    assert 'Test metrics' in proc.stdout and 'mIoU' in proc.stdout


def test_slurm_scripts_usage():
    proc = run_tool(['bash', 'tools/slurm_train.sh', 'debug'], check=False)
    assert proc.returncode == 2 and 'usage' in proc.stdout
    proc = run_tool(['bash', 'tools/slurm_test.sh', 'p', 'j', 'c.py'],
                    check=False)
    assert proc.returncode == 2 and 'usage' in proc.stdout
