import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: folders under configs/ that hold no experiment configs
NOT_CONFIGS = {'_base_', 'spaces'}


def experiment_configs():
    """Every experiment config under configs/ (relative paths): not the
    `_base_` pieces, not the search spaces of tools/analysis/search_hparams.py
    (configs/*/spaces/)."""
    import glob
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, REPO) for p in paths
        if not NOT_CONFIGS & set(osp.relpath(p, REPO).split(osp.sep))
        and not osp.basename(p).startswith('_'))


def run_tool(args, cwd=REPO, env=None, timeout=300, check=True):
    """Run a command (a list; 'python' means this interpreter) and return
    the CompletedProcess, with stdout and stderr merged."""
    args = [sys.executable if a == 'python' else a for a in args]
    full_env = dict(os.environ, PYTHONUNBUFFERED='1')
    # one OpenMP thread per tool process: on a small CPU shared with the
    # test process, oversubscribed threads make tiny runs 10x slower
    full_env.setdefault('OMP_NUM_THREADS', '1')
    # scripts (tools/dist_train.sh) call `python`/$PYTHON: make that this
    # interpreter even when its environment is not activated
    full_env['PATH'] = osp.dirname(sys.executable) + os.pathsep + \
        full_env.get('PATH', '')
    full_env.setdefault('PYTHON', sys.executable)
    full_env.update(env or {})
    proc = subprocess.run(args, cwd=cwd, env=full_env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited with '
                             f'{proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """A small demo set (16 train / 4 val images)."""
    from mmship.datasets.demo import make_demo_shapes
    root = str(tmp_path_factory.mktemp('demo_shapes'))
    make_demo_shapes(root, num_train=16, num_val=4)
    return root


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'packaging: builds the wheel and runs it in a fresh '
        'virtual environment (about 25 s; CI runs it, `-m "not packaging"` '
        'skips it)')
