"""The environment report, as mmseg's ``mmseg/utils/collect_env.py``:
mmengine's system report (Python, CUDA, GCC, PyTorch, OpenCV, MMEngine) plus
the versions mmship runs with.

    python -m mmship.utils.collect_env    (mmship/utils/collect_env.py)

Paste its output into bug reports.  tools/train.py and tools/test.py log
``versions_line()`` at the start (the Runner logs the system part itself).
"""
import os.path as osp
import subprocess
from collections import OrderedDict


def _git_hash(path: str) -> str:
    """The short commit of the checkout that holds ``path`` ('' when it is
    not in one, e.g. an installed wheel)."""
    root = osp.dirname(osp.dirname(osp.abspath(path)))
    if not osp.exists(osp.join(root, '.git')):
        return ''
    try:
        out = subprocess.run(['git', '-C', root, 'rev-parse', '--short=7',
                              'HEAD'], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ''
    return out.stdout.strip() if out.returncode == 0 else ''


def _mmcv_version() -> str:
    try:
        import mmcv
    except ImportError:
        return 'not installed'
    try:
        import mmcv._ext  # noqa: F401  (mmseg needs the compiled ops)
        ops = 'with ops'
    except ImportError:
        ops = 'WITHOUT ops (mmseg needs them)'
    return f'{mmcv.__version__} ({ops})'


def package_versions() -> 'OrderedDict[str, str]':
    """mmship and the libraries it builds on (cheap: no subprocess except
    one ``git`` call for a checkout)."""
    import mmengine
    import mmpretrain
    import mmseg
    import timm
    import torch

    import mmship
    commit = _git_hash(mmship.__file__)
    info = OrderedDict()
    info['mmship'] = mmship.__version__ + (f'+{commit}' if commit else '')
    info['mmship location'] = osp.dirname(osp.abspath(mmship.__file__))
    info['MMSegmentation'] = mmseg.__version__
    info['MMPretrain'] = mmpretrain.__version__
    info['MMCV'] = _mmcv_version()
    info['MMEngine'] = mmengine.__version__
    info['timm'] = timm.__version__
    info['PyTorch'] = torch.__version__
    return info


def versions_line() -> str:
    """``package_versions()`` in one log line."""
    info = package_versions()
    info['mmship'] += f" (at {info.pop('mmship location')})"
    return 'Environment: ' + ', '.join(f'{k} {v}' for k, v in info.items())


def collect_env() -> 'OrderedDict[str, str]':
    """mmengine's ``collect_env()`` (system, CUDA, compilers, PyTorch
    build) followed by ``package_versions()``."""
    from mmengine.utils.dl_utils import collect_env as collect_base_env
    info = OrderedDict(collect_base_env())
    for key, value in package_versions().items():
        info[key] = value
    return info


def main():
    for name, value in collect_env().items():
        print(f'{name}: {value}')
