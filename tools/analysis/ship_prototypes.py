"""SHIP's attribute prototypes (docs/ship.md, "Attribute prompts"): the
means of the spherical k-means clusters of last-block features of a seeded
sample of training images, from the config's frozen pretrained backbone (no
prompts).

The (K, D) matrix is written to --out (default: the config's
``model.backbone.prompt.prototypes`` if it names a file, else
work_dirs/ship_prototypes/<config>_k<K>.pth), as a .pth dict
``{'prototypes': tensor, ...metadata}`` or a bare .npy array.

Descriptors (raw last-block outputs, before the final norm, like the patch
tokens AP compares them with):
    cls         the CLS token, one per image (default, as in the hierarchy)
    mean_patch  the mean of the patch tokens, one per image
    patch       --patches-per-image randomly chosen patch tokens per image

    python tools/analysis/ship_prototypes.py CONFIG [--k 200]
        [--num-images 1000] [--out FILE] [--seed 0]
"""
import argparse

from mmengine.config import Config, DictAction

from mmship.ship.offline import (PROTOTYPE_DESCRIPTORS, compute_prototypes,
                                 default_device, resolve_options)

DESCRIPTORS = PROTOTYPE_DESCRIPTORS
__all__ = ['main']


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--k', type=int, default=None,
                   help='default: ship_offline.k of the config, else 200')
    p.add_argument('--num-images', type=int, default=None,
                   help='default: ship_offline.num_images, else 1000')
    p.add_argument('--descriptor', choices=DESCRIPTORS, default=None,
                   help="default: ship_offline.prototype_descriptor, else "
                   "'cls'")
    p.add_argument('--patches-per-image', type=int, default=16)
    p.add_argument('--out', default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--n-init', type=int, default=4,
                   help='k-means++ restarts (the one with the highest '
                   'total cosine is kept)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--pipeline', choices=('train', 'test'), default=None,
                   help="default: ship_offline.pipeline, else 'train'")
    p.add_argument('--device', default=None)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_options(args, cfg, dict(k=200, num_images=1000, descriptor='cls',
                                    pipeline='train'),
                    keys=dict(descriptor='prototype_descriptor'))
    if args.descriptor not in DESCRIPTORS:
        raise SystemExit(f'descriptor {args.descriptor!r} is not one of '
                         f'{DESCRIPTORS}.')
    info = compute_prototypes(
        cfg, args.config, out=args.out, k=args.k, num_images=args.num_images,
        descriptor=args.descriptor,
        patches_per_image=args.patches_per_image, seed=args.seed,
        n_init=args.n_init, batch_size=args.batch_size,
        num_workers=args.num_workers, pipeline=args.pipeline,
        device=args.device or default_device())
    out = info['path']
    print(f'\nspherical k-means K={args.k} over {info["num_descriptors"]} '
          f'{args.descriptor!r} descriptors of {info["num_images"]} images '
          f'-> {out} {tuple(info["prototypes"].shape)}')
    print(f'\nConfig snippet:\nmodel.backbone.prompt.prototypes={out!r}')
    return out


if __name__ == '__main__':
    main()
