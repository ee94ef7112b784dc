"""Merge prompts (a training checkpoint or an exported adapter) with the
config's frozen backbone into a standalone full checkpoint, which the stock
``mmseg.apis.init_model(config, FILE.pth)`` (or mmpretrain's) loads.

    python tools/merge_prompts.py CONFIG CKPT|ADAPTER --out FILE.pth
        [--cfg-options k=v ...]

The backbone comes from ``model.backbone.init_cfg``; one whose sha256
differs from the one the prompts were trained with is refused.
"""
import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Merge prompts with the frozen backbone into a full '
        'checkpoint.')
    parser.add_argument('config', help='the config the prompts were '
                        'trained with')
    parser.add_argument('prompts', help='training checkpoint (.pth) or '
                        'adapter (.safetensors, from export_prompts.py)')
    parser.add_argument('--out', required=True, help='full checkpoint '
                        '(.pth)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config (key=value)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmship.engine.launch import (UsageError, build_model,
                                      check_checkpoint, load_config)
    try:
        check_checkpoint(args.prompts, 'prompts')
        cfg = load_config(args.config, args.cfg_options)
    except UsageError as err:
        sys.exit(f'tools/merge_prompts.py: error: {err}')
    import torch

    from mmship.engine.lifecycle import (CheckpointMismatch,
                                         complete_state_dict, read_prompts)
    model = build_model(cfg)
    prompts, identity, meta, held = read_prompts(args.prompts, model)
    checkpoint = dict(state_dict=dict(prompts, **held),
                      mmship=dict(content='full' if held else 'prompts',
                                  backbone=identity))
    try:  # prompts only: load the backbone from init_cfg, check its hash
        complete_state_dict(model, checkpoint, args.prompts)
    except CheckpointMismatch as err:
        sys.exit(f'tools/merge_prompts.py: error: {err}')
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    out_meta = dict(iter=meta.get('iter'),
                    mmship=dict(backbone=identity, content='full'))
    if meta.get('dataset_meta'):  # init_model takes the classes from here
        out_meta['dataset_meta'] = meta['dataset_meta']
    torch.save(dict(state_dict=model.state_dict(), meta=out_meta), args.out)
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
