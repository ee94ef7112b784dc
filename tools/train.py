"""Train a model from an mmship config (segmentation: mmseg scope;
classification: mmpretrain scope), the OpenMMLab way.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import logging
import os
import os.path as osp
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (mmseg or '
                                     'mmpretrain config) with mmship.')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or (no value) from the latest checkpoint in '
        'the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training (needs a GPU)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='start a fresh run in a work dir that holds checkpoints of an '
        'earlier run of this config, replacing them')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    # cheap checks first: the imports below take seconds
    if not osp.isfile(args.config):
        sys.exit(f'tools/train.py: error: Config file {args.config!r} does '
                 f'not exist.')
    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        sys.exit(f'tools/train.py: error: --resume checkpoint '
                 f'{args.resume!r} does not exist.')
    import torch
    from mmengine.logging import print_log

    import mmship  # noqa: F401  (registers mmship's modules)
    from mmship.engine.checks import (check_checkpoint_config,
                                      check_checkpoint_keys, check_data,
                                      latest_readable_checkpoint,
                                      load_checkpoint_file)
    from mmship.engine.hooks import NonFiniteLossError, ensure_non_finite_hook
    from mmship.engine.launch import (UsageError, build_runner,
                                      check_checkpoint, check_work_dir,
                                      default_work_dir, load_config,
                                      end_distributed, setup_distributed)
    from mmship.utils import versions_line
    resume_from = None
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg.launcher = args.launcher
        # work_dir: CLI > config > ./work_dirs/<config name>
        if args.work_dir is not None:
            cfg.work_dir = args.work_dir
        elif cfg.get('work_dir', None) is None:
            cfg.work_dir = default_work_dir(args.config)

        if args.amp:
            if not torch.cuda.is_available():
                raise UsageError('--amp needs a GPU (mmengine\'s '
                                 'AmpOptimWrapper has no CPU mode).')
            if cfg.optim_wrapper.get('type', 'OptimWrapper') == \
                    'AmpOptimWrapper':
                print_log('AMP training is already enabled in your config.',
                          logger='current', level=logging.WARNING)
            else:
                cfg.optim_wrapper.type = 'AmpOptimWrapper'
                cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

        if args.resume == 'auto':
            # the newest checkpoint that loads (unreadable ones: warned)
            resume_from = latest_readable_checkpoint(cfg.work_dir)
            cfg.resume = True
            cfg.load_from = resume_from
            if resume_from is None:
                print_log(f'--resume: no readable checkpoint in '
                          f'{cfg.work_dir} yet; training starts from the '
                          f'beginning.', logger='current',
                          level=logging.WARNING)
        elif args.resume is not None:
            check_checkpoint(args.resume, '--resume checkpoint')
            resume_from = args.resume
            cfg.resume = True
            cfg.load_from = args.resume
        resumed = None
        if resume_from is not None:
            resumed = load_checkpoint_file(resume_from)
            check_checkpoint_config(cfg, resumed.get('meta'), resume_from)
        check_data(cfg, ('train', 'val'))
        ensure_non_finite_hook(cfg)

        rank = int(os.environ.get('RANK', '0'))
        if rank == 0:  # one process checks (the others find rank 0's files)
            check_work_dir(cfg.work_dir, args.config, mode='train',
                           resume=args.resume is not None,
                           overwrite=args.overwrite)
        setup_distributed(cfg)
    except UsageError as err:
        sys.exit(f'tools/train.py: error: {err}')

    # SHIP configs without a hierarchy / prototypes: computed here (rank 0,
    # then broadcast) with the offline tools' code, before the model (whose
    # prompt sets depend on the hierarchy) is built; kept in the work dir.
    from mmship.ship.offline import apply_ship_offline, prepare_ship_offline
    offline = prepare_ship_offline(cfg, args.config, cfg.work_dir,
                                   reuse=not args.overwrite)

    runner = build_runner(cfg)
    from mmship.engine import lifecycle
    lifecycle.register(runner)  # prompt-only checkpoints, random states
    if resumed is not None:
        try:
            check_checkpoint_keys(getattr(runner.model, 'module',
                                          runner.model),
                                  resumed.get('state_dict', resumed),
                                  lifecycle.is_prompt_only(resumed),
                                  resume_from)
        except UsageError as err:
            sys.exit(f'tools/train.py: error: {err}')
        del resumed
    runner.logger.info(versions_line())  # mmship, mmseg, mmcv, ... versions
    apply_ship_offline(runner.model, offline, runner.logger)
    try:
        runner.train()
    except NonFiniteLossError as err:
        sys.exit(f'tools/train.py: error: {err}')
    print_log(f'Finished; checkpoints and logs are in '
              f'{osp.abspath(runner.work_dir)}', logger='current')
    end_distributed()


if __name__ == '__main__':
    main()
