"""What tools/train.py, tools/test.py and the analysis tools share: config
loading with early, clear errors, work-dir safety, CPU distributed runs, and
building a config's model in its own scope (mmseg or mmpretrain)."""
import glob
import logging
import os
import os.path as osp
import re
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from mmship.utils.config import drop_mmship_scope

SCOPES = ('mmseg', 'mmpretrain')
_CKPT = re.compile(r'^(iter|epoch)_\d+\.pth$')
_TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')


class UsageError(Exception):
    """Bad input found before anything is built or written."""


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file, merge ``--cfg-options`` and check its scope."""
    if not osp.isfile(path):
        hint = ''
        if osp.isdir(path):
            hint = ' (that is a folder; name a config file in it)'
        raise UsageError(f'Config file {path!r} does not exist{hint}.')
    if not path.endswith('.py'):
        raise UsageError(f'Config {path!r} is not a .py config file.')
    cfg = drop_mmship_scope(Config.fromfile(path))  # `mmship::` bases
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise UsageError(
            f'{path}: default_scope is {scope!r}; mmship configs set '
            f"default_scope='mmseg' (segmentation) or 'mmpretrain' "
            f'(classification), usually through a _base_ default_runtime.')
    if 'model' not in cfg:
        raise UsageError(f'{path} defines no `model`.')
    return cfg


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _previous_run(work_dir: str):
    """(checkpoints, dumped config names, log folders) found in work_dir."""
    names = os.listdir(work_dir)
    ckpts = sorted(n for n in names if _CKPT.match(n)) + \
        (['last_checkpoint'] if 'last_checkpoint' in names else [])
    logs = [n for n in names if _TIMESTAMP.match(n)
            and osp.isdir(osp.join(work_dir, n))]
    configs = [n for n in names if n.endswith('.py')]
    return ckpts, configs, logs


def check_work_dir(work_dir: str, config_path: str, mode: str = 'train',
                   resume: bool = False, overwrite: bool = False) -> None:
    """Refuse a work dir where the run would overwrite files it does not own.

    mmengine writes ``<config name>.py`` (the merged config), checkpoints
    ``iter_N.pth``/``epoch_N.pth``, ``last_checkpoint`` and a timestamped log
    folder into the work dir.
    """
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise UsageError(f'Work dir {work_dir!r} exists and is not a folder.')
    dump = osp.join(work_dir, osp.basename(config_path))
    if osp.exists(dump) and osp.samefile(dump, config_path):
        raise UsageError(
            f'Work dir {work_dir!r} holds the config itself: the run would '
            f'overwrite {config_path} with its merged copy. Choose another '
            f'--work-dir.')
    if not osp.isdir(work_dir):
        return
    ckpts, configs, logs = _previous_run(work_dir)
    name = osp.basename(config_path)
    if osp.exists(dump) and not logs:
        raise UsageError(
            f'{dump} exists and is not from an earlier run (the work dir has '
            f'no run logs): the run would overwrite it. Choose another '
            f'--work-dir.')
    if mode != 'train' or not ckpts:
        return
    others = [c for c in configs if c != name]
    if others and name not in configs:
        raise UsageError(
            f'Work dir {work_dir!r} holds checkpoints of another config '
            f'({", ".join(others)}). Choose another --work-dir.')
    if not resume and not overwrite:
        raise UsageError(
            f'Work dir {work_dir!r} holds checkpoints of an earlier run '
            f'({", ".join(ckpts[:4])}{" ..." if len(ckpts) > 4 else ""}). '
            f'Use --resume to continue it, --overwrite to start again and '
            f'replace them, or another --work-dir.')


def check_checkpoint(path: str, what: str = 'checkpoint') -> None:
    if path.startswith(('http://', 'https://', 's3://')):
        return
    if not osp.isfile(path):
        raise UsageError(f'{what} {path!r} does not exist.')


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) would pick, or None."""
    path = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(path):
        with open(path) as f:
            last = f.read().strip()
        if osp.isfile(last):
            return last
    ckpts = glob.glob(osp.join(work_dir, '*_*.pth'))
    ckpts = [c for c in ckpts if _CKPT.match(osp.basename(c))]
    if not ckpts:
        return None
    return max(ckpts, key=lambda c: int(re.findall(r'\d+', osp.basename(c))
                                        [0]))


def _replace_sync_bn(node) -> int:
    """SyncBN -> BN in a config tree; returns how many were replaced."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN'):
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_sync_bn(value)
    return count


def _slurm_to_torch_env() -> None:
    """``--launcher slurm`` without a GPU: the rank, world size and master
    address from srun's environment, as mmengine's slurm launcher derives
    them (which also sets a CUDA device, so it cannot run here)."""
    try:
        rank = os.environ['SLURM_PROCID']
        ntasks = os.environ['SLURM_NTASKS']
    except KeyError as missing:
        raise UsageError(f'--launcher slurm: {missing} is not set; start the '
                         f'tool with srun (tools/slurm_train.sh).') from None
    os.environ['RANK'] = rank
    os.environ['WORLD_SIZE'] = ntasks
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        import subprocess
        nodes = os.environ.get('SLURM_NODELIST', '')
        out = subprocess.run(f'scontrol show hostnames "{nodes}" | head -n1',
                             shell=True, capture_output=True, text=True)
        os.environ['MASTER_ADDR'] = out.stdout.strip() or '127.0.0.1'


def setup_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` (and ``slurm``) work on CPU-only machines
    too.

    mmengine's launcher sets a CUDA device and wraps the model with
    ``device_ids=[local_rank]``; without a GPU both fail.  Here: gloo
    process group, DDP without device ids, SyncBN (CUDA only) -> BN.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher == 'slurm':
        _slurm_to_torch_env()
    elif cfg.launcher != 'pytorch':
        raise UsageError(f'Distributed runs without a GPU are supported with '
                         f'--launcher pytorch (torchrun) or slurm, not '
                         f'{cfg.launcher!r}.')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    replaced = _replace_sync_bn(cfg.model)
    if replaced:
        print_log(f'No GPU: {replaced} SyncBN layer config(s) use BN in this '
                  f'CPU run.', logger='current', level=logging.WARNING)
    import torch.distributed as dist
    if not dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if 'timeout' in kwargs:
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
        dist.init_process_group(backend='gloo', **kwargs)


def end_distributed() -> None:
    """Close the process group when a distributed run ends.  Left to
    interpreter exit, the gloo / NCCL threads can be torn down while still
    running, and a finished run then aborts ('terminate called without an
    active exception')."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        init_default_scope(cfg.default_scope)
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def build_model(cfg: Config):
    """The config's model, built in its scope; no weights are loaded."""
    import mmship  # noqa: F401  (registration)
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


__all__ = ['UsageError', 'load_config', 'default_work_dir', 'check_work_dir',
           'check_checkpoint', 'latest_checkpoint', 'setup_distributed',
           'build_runner', 'build_model']
