"""Trainable and total parameters of a config's model, per module.

    python tools/analysis/count_params.py CONFIG [--work-dir DIR]
        [--cfg-options k=v ...]

No weights are loaded: the counts come from the config alone.  SHIP's group
prompt sets depend on the hierarchy: for configs that leave it to the start
of training, --work-dir names a run whose hierarchy is used.
"""
import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Print the trainable/total parameter table of a config.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='a run of the config: SHIP '
                        'hierarchy / prototypes computed at its start')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config (key=value)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmship.engine.launch import UsageError, build_model, load_config
    from mmship.engine.params import param_table
    try:
        cfg = load_config(args.config, args.cfg_options)
    except UsageError as err:
        sys.exit(f'count_params.py: error: {err}')
    from mmship.ship.offline import use_work_dir_state
    if args.work_dir:
        use_work_dir_state(cfg, args.work_dir)
    model = build_model(cfg)
    print(f'{args.config} ({type(model).__name__}, scope '
          f'{cfg.default_scope})')
    print(param_table(model))
    pending = getattr(getattr(model.backbone, 'prompter', None), 'pending',
                      None)
    if pending and 'hierarchy' in pending:
        print('Note: the SHIP hierarchy is not set, so the group prompt sets '
              '(SIP, AP) are not counted: give --work-dir of a run or '
              '--cfg-options model.backbone.prompt.starts="[0,4,8]".')


if __name__ == '__main__':
    main()
