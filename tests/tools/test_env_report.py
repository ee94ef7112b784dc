"""The environment report (python -m mmship.utils.collect_env) and the
version line the tools log."""
import mmship
from conftest import run_tool


def test_collect_env_module():
    out = run_tool(['python', '-m', 'mmship.utils.collect_env']).stdout
    for key in ('Python:', 'PyTorch:', 'MMEngine:', 'MMSegmentation:',
                'MMPretrain:', 'MMCV:', 'timm:', 'mmship location:'):
        assert key in out, key
    assert f'mmship: {mmship.__version__}' in out
    assert 'RuntimeWarning' not in out  # no double import under -m


def test_versions_line():
    from mmship.utils import versions_line
    line = versions_line()
    assert line.startswith(f'Environment: mmship {mmship.__version__}')
    assert '\n' not in line and 'MMCV 2.' in line and 'with ops' in line
