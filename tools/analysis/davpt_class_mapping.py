"""DA-VPT's class-to-prompt mapping of a config, offline.

    python tools/analysis/davpt_class_mapping.py CONFIG
        [--images-per-class 10] [--max-images 2000] [--checkpoint CKPT]
        [--with-prompts] [--out FILE] [--device cpu|cuda]
        [--cfg-options k=v ...]

Builds the config's model (pretrained backbone weights from its init_cfg,
then --checkpoint if given), computes the class means of the frozen backbone
(prompts off; --with-prompts uses the checkpoint's prompts as well) on the
training set, clusters them onto the proxies (cosine k-means; identity when
classes <= proxies) and writes the mapping as JSON (default:
work_dirs/<config name>/davpt_class_mapping.json).  Training loads it with
    --cfg-options custom_hooks.0.mapping_file=FILE
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Compute DA-VPT's class-to-prompt mapping of a config.")
    parser.add_argument('config', help='DA-VPT config file')
    parser.add_argument('--images-per-class', type=int, default=10,
                        help='images per class for the class means')
    parser.add_argument('--max-images', type=int, default=2000,
                        help='segmentation: read at most this many images')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--checkpoint', help='trained checkpoint to load')
    parser.add_argument('--with-prompts', action='store_true',
                        help='use the prompts (and bias deltas) too')
    parser.add_argument('--test-pipeline', action='store_true',
                        help='read images through the test pipeline '
                        '(classification; default: the training pipeline)')
    parser.add_argument('--out', help='JSON file to write')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--class-mean-norm', choices=['l2', 'layer', 'none'],
                        default=None,
                        help="k-means input: 'l2' (means of unit image "
                        "features), 'layer' (the reference: means of raw "
                        "features, layer-normalised) or 'none'; default: "
                        "the config's DAVPTMappingHook value, else 'l2'")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config (key=value)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.registry import DATASETS
    from mmengine.runner import load_checkpoint

    from mmship.davpt.hooks import davpt_prompter
    from mmship.davpt.mapping import compute_class_mapping, save_mapping
    from mmship.engine.launch import (UsageError, build_model,
                                      default_work_dir, load_config)
    try:
        cfg = load_config(args.config, args.cfg_options)
        if args.images_per_class < 1:
            raise UsageError('--images-per-class must be >= 1.')
        if args.checkpoint and not osp.isfile(args.checkpoint):
            raise UsageError(f'--checkpoint {args.checkpoint!r} does not '
                             f'exist.')
    except UsageError as err:
        sys.exit(f'davpt_class_mapping.py: error: {err}')
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = build_model(cfg)
    try:
        prompter = davpt_prompter(model)
    except TypeError as err:
        sys.exit(f'davpt_class_mapping.py: error: {err}')
    model.init_weights()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu',
                        strict=True)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model.to(device)

    dataset_cfg = cfg.train_dataloader.dataset.copy()
    if args.test_pipeline:
        dataset_cfg['pipeline'] = cfg.test_dataloader.dataset.pipeline
    dataset = DATASETS.build(dataset_cfg)
    norm = args.class_mean_norm
    if norm is None:
        hooks = [h for h in cfg.get('custom_hooks', [])
                 if str(h.get('type', '')).endswith('DAVPTMappingHook')]
        norm = hooks[0].get('class_mean_norm', 'l2') if hooks else 'l2'
    result = compute_class_mapping(
        model, dataset, images_per_class=args.images_per_class,
        max_images=args.max_images, batch_size=args.batch_size,
        num_workers=args.num_workers, with_prompts=args.with_prompts,
        seed=args.seed, class_mean_norm=norm)
    out = args.out or osp.join(cfg.get('work_dir') or
                               default_work_dir(args.config),
                               'davpt_class_mapping.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    names = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    data = save_mapping(out, result, prompter.num_proxies, names,
                        stage='offline', config=args.config,
                        checkpoint=args.checkpoint, class_mean_norm=norm)
    sizes = [len(v) for v in data['clusters'].values()]
    print(f'{data["num_classes"]} classes -> {data["num_proxies"]} proxies; '
          f'classes per proxy: {sizes}')
    for k, members in data['clusters'].items():
        print(f'  proxy {k}: {", ".join(map(str, members[:12]))}'
              f'{" ..." if len(members) > 12 else ""}')
    print(f'written to {out}')


if __name__ == '__main__':
    main()
