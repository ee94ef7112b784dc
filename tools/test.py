"""Test (and evaluate) a checkpoint with an mmship config (mmseg or
mmpretrain scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT]
        [--show-dir DIR] [--tta] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

--out follows the host library: for segmentation configs a folder that
receives the predicted label maps (png, as mmseg's tools/test.py); for
classification configs a .pkl file with the predictions (as mmpretrain's).
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a checkpoint with mmship.')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the dir for logs and the evaluation metrics (json) (default: '
        './work_dirs/<config name>)')
    parser.add_argument(
        '--out',
        help='segmentation: folder for the predicted label maps; '
        'classification: .pkl file for the predictions')
    parser.add_argument(
        '--show-dir',
        help='folder for the painted predictions (as mmseg\'s and '
        'mmpretrain\'s tools/test.py)')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation: the config\'s tta_pipeline and '
        'tta_model')
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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _show(cfg, show_dir: str) -> None:
    """--show-dir: the visualization hook draws into show_dir."""
    from mmship.engine.launch import UsageError
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise UsageError('--show-dir needs default_hooks.visualization '
                         '(SegVisualizationHook / VisualizationHook) in the '
                         'config.')
    if osp.isdir(show_dir) and os.listdir(show_dir):
        raise UsageError(f'--show-dir {show_dir!r} is not empty; its files '
                         f'could be overwritten.')
    if cfg.default_scope == 'mmseg':
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir
    else:
        hook['enable'] = True
        hook['out_dir'] = show_dir


def _tta(cfg, config_path: str) -> None:
    """--tta: the test pipeline and model of the config's tta_* keys."""
    from mmship.engine.launch import UsageError
    if cfg.get('tta_pipeline') is None:
        raise UsageError(f'--tta: {config_path} defines no tta_pipeline '
                         f'(see mmseg\'s configs/_base_/datasets/ade20k.py).')
    tta_model = cfg.get('tta_model') or (
        dict(type='SegTTAModel') if cfg.default_scope == 'mmseg' else
        dict(type='AverageClsScoreTTA'))
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    tta_model['module'] = cfg.model
    cfg.model = tta_model


def main(argv=None):
    args = parse_args(argv)
    # cheap checks first: the imports below take seconds
    for path, what in ((args.config, 'Config file'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path) and '://' not in path:
            sys.exit(f'tools/test.py: error: {what} {path!r} does not exist.')
    from mmengine.logging import print_log

    import mmship  # noqa: F401  (registers mmship's modules)
    from mmship.engine.checks import (check_checkpoint_config,
                                      check_checkpoint_keys, check_data,
                                      load_checkpoint_file)
    from mmship.engine.lifecycle import is_prompt_only
    from mmship.engine.launch import (UsageError, build_model, build_runner,
                                      check_checkpoint, check_work_dir,
                                      default_work_dir, load_config,
                                      end_distributed, setup_distributed)
    from mmship.utils import versions_line
    try:
        check_checkpoint(args.checkpoint)
        cfg = load_config(args.config, args.cfg_options)
        cfg.launcher = args.launcher
        if args.work_dir is not None:
            cfg.work_dir = args.work_dir
        elif cfg.get('work_dir', None) is None:
            cfg.work_dir = default_work_dir(args.config)
        cfg.load_from = args.checkpoint
        cfg.resume = False
        if cfg.get('test_dataloader') is None:
            raise UsageError(f'{args.config} defines no test_dataloader.')
        ckpt = None
        if '://' not in args.checkpoint:
            ckpt = load_checkpoint_file(args.checkpoint)
            check_checkpoint_config(cfg, ckpt.get('meta'), args.checkpoint)
        check_data(cfg, ('test', ))
        if args.show_dir is not None:
            _show(cfg, args.show_dir)
        if args.tta:
            _tta(cfg, args.config)
        if ckpt is not None:
            model = build_model(cfg)
            check_checkpoint_keys(getattr(model, 'module', model),
                                  ckpt.get('state_dict', ckpt),
                                  is_prompt_only(ckpt), args.checkpoint)
            del model, ckpt

        if args.out is not None:
            if cfg.default_scope == 'mmseg':
                if osp.isfile(args.out):
                    raise UsageError(f'--out {args.out!r} is a file; '
                                     f'segmentation predictions go to a '
                                     f'folder.')
                if osp.isdir(args.out) and os.listdir(args.out):
                    raise UsageError(f'--out folder {args.out!r} is not '
                                     f'empty; its files could be '
                                     f'overwritten.')
                cfg.test_evaluator['output_dir'] = args.out
                cfg.test_evaluator['keep_results'] = True
            else:
                if not args.out.endswith(('.pkl', '.pickle')):
                    raise UsageError('--out must be a .pkl/.pickle file for '
                                     'classification configs.')
                if osp.exists(args.out):
                    raise UsageError(f'--out {args.out!r} exists; it would '
                                     f'be overwritten.')
        if int(os.environ.get('RANK', '0')) == 0:
            check_work_dir(cfg.work_dir, args.config, mode='test')
        setup_distributed(cfg)
    except UsageError as err:
        sys.exit(f'tools/test.py: error: {err}')

    runner = build_runner(cfg)
    from mmship.engine import lifecycle
    lifecycle.register(runner)  # prompt-only checkpoints, random states
    runner.logger.info(versions_line())  # mmship, mmseg, mmcv, ... versions
    if args.out is not None and cfg.default_scope != 'mmseg':
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    try:
        metrics = runner.test()
    except lifecycle.CheckpointMismatch as err:
        sys.exit(f'tools/test.py: error: {err}')
    print_log('Test metrics: ' + json.dumps(
        {k: (round(v, 4) if isinstance(v, float) else v)
         for k, v in metrics.items()}, default=str), logger='current')
    end_distributed()


if __name__ == '__main__':
    main()
