"""Trainable and total parameters of a config's model, per module.

    python tools/analysis/count_params.py CONFIG [--cfg-options k=v ...]

No weights are loaded: the counts come from the config alone.
"""
import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Print the trainable/total parameter table of a config.')
    parser.add_argument('config', help='config file path')
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
    model = build_model(cfg)
    print(f'{args.config} ({type(model).__name__}, scope '
          f'{cfg.default_scope})')
    print(param_table(model))


if __name__ == '__main__':
    main()
