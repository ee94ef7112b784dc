"""The wheel: built from the repository, installed into a fresh virtual
environment, it serves `mim train mmship CONFIG`, `mim test mmship ...` and
`_base_ = ['mmship::...']` in a config outside the repository (through the
tools and through mmseg's API).

The fresh environment has no pip, setuptools or mmship of its own: a `.pth`
file puts this environment's site-packages (torch, mmcv, mmseg, mim, ...) on
its path, and mmship comes only from the wheel (pip installs it there with
`--python`). A `.pth` line adds a folder without running the `.pth` files in
it, so an editable mmship of this environment (its easy-install.pth) stays
invisible; the commands run from an empty folder without PYTHONPATH, so the
repository's mmship cannot be imported either. About 25 s on 2 cores: the
wheel build takes 2 s, the rest is a 4-iteration CPU run, a test run and a
model load.
"""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.packaging

DEMO = 'vpt-deep_vit-tiny_upernet_300it_demo-shapes-64x64.py'
# what a wheel build needs from the repository (no work dirs, data, venvs)
SOURCES = ('setup.py', 'README.md', 'model-index.yml', 'mmship', 'configs',
           'tools')


def run(cmd, cwd, env, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, (f'{" ".join(cmd)} exited with '
                                  f'{proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc.stdout


@pytest.fixture(scope='module')
def wheel_env(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, the wheel)."""
    tmp = tmp_path_factory.mktemp('packaging')
    src = tmp / 'src'
    src.mkdir()
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim',
                                    '*.egg-info')
    for name in SOURCES:
        path = osp.join(REPO, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1')
    env.pop('PYTHONPATH', None)
    run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
         '--no-build-isolation', '-w', str(tmp / 'dist'), str(src)],
        cwd=str(tmp), env=env)
    wheel, = glob.glob(str(tmp / 'dist' / 'mmship-*.whl'))

    venv = tmp / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', str(venv)],
        cwd=str(tmp), env=env)
    python = str(venv / 'bin' / 'python')
    site = run([python, '-c', 'import sysconfig; '
                'print(sysconfig.get_paths()["purelib"])'],
               cwd=str(tmp), env=env).strip()
    parent = {sysconfig.get_paths()['purelib'],
              sysconfig.get_paths()['platlib']}
    with open(osp.join(site, 'parent_env.pth'), 'w') as f:
        f.write('\n'.join(sorted(parent)) + '\n')
    run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
         '--no-deps', '--no-index', wheel], cwd=str(tmp), env=env)
    return python, site, wheel


def test_wheel_carries_configs_tools_and_model_index(wheel_env):
    _, _, wheel = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ('mmship/.mim/model-index.yml',
                 'mmship/.mim/configs/_base_/default_runtime.py',
                 f'mmship/.mim/configs/demo/{DEMO}',
                 'mmship/.mim/configs/bench/metafile.yaml',
                 'mmship/.mim/tools/train.py', 'mmship/.mim/tools/test.py',
                 'mmship/.mim/tools/slurm_train.sh'):
        assert name in names, name
    assert not any('__pycache__' in n for n in names)


def test_mim_train_test_and_mmship_base(wheel_env, demo_data, tmp_path):
    python, site, _ = wheel_env
    run_dir = tmp_path / 'user'  # an empty folder: no repository around
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    small = ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
             'default_hooks.checkpoint.interval=4']
    for loader in ('train', 'val', 'test'):
        small += [f'{loader}_dataloader.dataset.data_root={demo_data}',
                  f'{loader}_dataloader.num_workers=0',
                  f'{loader}_dataloader.persistent_workers=False']

    # 1. mim train mmship CONFIG: the config is found by name in the package
    out = run([python, '-m', 'mim', 'train', 'mmship', DEMO,
               '--work-dir', 'work', '--cfg-options'] + small,
              cwd=str(run_dir), env=env)
    mim = osp.join(site, 'mmship', '.mim')
    assert osp.join(mim, 'configs', 'demo', DEMO) in out
    assert osp.join(mim, 'tools', 'train.py') in out
    assert f'at {osp.join(site, "mmship")}' in out  # mmship from the wheel
    ckpt = run_dir / 'work' / 'iter_4.pth'
    assert ckpt.is_file(), out[-3000:]

    # 2. a user's config that inherits the shipped demo config, tested with
    #    mim test mmship
    (run_dir / 'my_demo.py').write_text(
        f"_base_ = ['mmship::demo/{DEMO}']\n"
        f"test_dataloader = dict(num_workers=0, persistent_workers=False,\n"
        f"    dataset=dict(data_root={str(demo_data)!r}))\n")
    out = run([python, '-m', 'mim', 'test', 'mmship', 'my_demo.py',
               '--checkpoint', str(ckpt),
               '--work-dir', 'test'], cwd=str(run_dir), env=env)
    assert 'Test metrics' in out and 'mIoU' in out, out[-3000:]
    assert f'at {osp.join(site, "mmship")}' in out

    # 3. the same config through mmseg's API (mmship.utils.read_config)
    out = run([python, '-c',
               'from mmseg.apis import init_model\n'
               'from mmship.utils import read_config\n'
               f'model = init_model(read_config("my_demo.py"), {str(ckpt)!r}, '
               'device="cpu")\n'
               'print("classes:", model.dataset_meta["classes"])'],
              cwd=str(run_dir), env=env)
    assert "classes: ('background', 'circle'" in out, out[-3000:]
