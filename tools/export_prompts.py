"""Export the deployable adapter of a training checkpoint: what training
changed (prompts, the prompter's buffers, trainable host parts, neck and
heads), without the frozen backbone.

    python tools/export_prompts.py CONFIG CKPT --out FILE.safetensors
        [--cfg-options k=v ...]

Writes FILE.safetensors and FILE.json (config text, mmship version, the
frozen backbone's source and sha256, the checkpoint's iteration and
dataset meta): all tools/merge_prompts.py needs to rebuild the model.
"""
import argparse
import json
import os.path as osp
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export the prompts of a checkpoint as a safetensors '
        'adapter.')
    parser.add_argument('config', help='the config the checkpoint was '
                        'trained with')
    parser.add_argument('checkpoint', help='training checkpoint (.pth)')
    parser.add_argument('--out', required=True,
                        help='adapter file (.safetensors)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config (key=value)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.out.endswith('.safetensors'):
        sys.exit('tools/export_prompts.py: error: --out must end with '
                 '.safetensors.')
    from mmship.engine.launch import (UsageError, build_model,
                                      check_checkpoint, load_config)
    try:
        check_checkpoint(args.checkpoint)
        cfg = load_config(args.config, args.cfg_options)
    except UsageError as err:
        sys.exit(f'tools/export_prompts.py: error: {err}')
    from safetensors.torch import save_file

    from mmship.engine.lifecycle import CheckpointMismatch, read_prompts
    from mmship.version import __version__
    try:
        prompts, identity, meta, _ = read_prompts(args.checkpoint,
                                                  build_model(cfg))
    except CheckpointMismatch as err:
        sys.exit(f'tools/export_prompts.py: error: {err}')
    # safetensors refuses views that share storage: one copy each
    save_file({k: v.detach().cpu().contiguous().clone()
               for k, v in prompts.items()}, args.out)
    sidecar = osp.splitext(args.out)[0] + '.json'
    with open(sidecar, 'w') as f:
        json.dump(dict(mmship_version=__version__, backbone=identity,
                       checkpoint=osp.abspath(args.checkpoint),
                       iter=meta.get('iter'),
                       dataset_meta=meta.get('dataset_meta'),
                       num_tensors=len(prompts), config=cfg.pretty_text),
                  f, indent=1, default=list)
    print(f'Wrote {args.out} ({osp.getsize(args.out):,} bytes, '
          f'{len(prompts)} tensors) and {sidecar}')


if __name__ == '__main__':
    main()
