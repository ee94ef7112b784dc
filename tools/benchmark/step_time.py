"""Training-step time and memory of whole task models built from configs,
each timed alone in one process, as ratios to the first config.

    python tools/benchmark/step_time.py configs/bench/*_camvid-upernet.py \
        --batch 8 [--cfg-options k=v ...]

A step is the config's own ``model.train_step`` with its optimizer wrapper
(bf16 AMP in the bench configs): data preprocessor, forward, every loss,
backward and the optimizer update, on a synthetic batch at the config's crop
size (segmentation) or image size (classification).  No weights are loaded.
``--cfg-options`` apply to the configs that have the key (e.g. SHIP's
``model.backbone.prompt.starts``).  DA-VPT's class-to-prompt mapping, which a
hook computes before training, is set round-robin: it does not change the
cost.  Rounds are interleaved across configs and each keeps its best round.
"""
import argparse
import os.path as osp
import statistics
import time

import torch
from mmengine.config import DictAction


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=10, help='steps per round')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args()


def _has_key(cfg, key: str) -> bool:
    node = cfg
    for part in key.split('.'):
        try:
            node = node[part]
        except (KeyError, TypeError):
            return False
    return True


def build(config: str, options: dict, device: str):
    """(model, optimizer wrapper, scope) of a config, on ``device``."""
    from mmengine.optim import build_optim_wrapper

    from mmship.engine.launch import build_model, load_config
    cfg = load_config(config)
    cfg.merge_from_dict({k: v for k, v in options.items()
                         if _has_key(cfg, k)})
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg).to(device)
    for module in model.modules():
        if getattr(module, 'mapping_ready', True) is False:
            module.set_mapping(torch.arange(module.num_classes) %
                               module.num_proxies)
    optim_cfg = cfg.optim_wrapper.copy()
    if device == 'cpu' and optim_cfg.get('type') == 'AmpOptimWrapper':
        optim_cfg.type = 'OptimWrapper'  # no CPU AMP in mmengine
        optim_cfg.pop('dtype', None)
    return model, build_optim_wrapper(model, optim_cfg), cfg


def synthetic_batch(cfg, model, batch: int):
    """A batch in the form the config's dataloader hands to train_step."""
    if cfg.default_scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        h, w = cfg.get('crop_size') or cfg.model.backbone.img_size
        num_classes = model.decode_head.num_classes
        samples = []
        for _ in range(batch):
            s = SegDataSample(metainfo=dict(img_shape=(h, w),
                                            ori_shape=(h, w),
                                            pad_shape=(h, w)))
            s.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, h, w)))
            samples.append(s)
    else:
        from mmpretrain.structures import DataSample
        size = cfg.model.backbone.img_size
        h, w = (size, size) if isinstance(size, int) else size
        num_classes = model.head.num_classes
        samples = [DataSample().set_gt_label(i % num_classes)
                   for i in range(batch)]
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
              for _ in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


def main():
    args = parse_args()
    import mmship  # noqa: F401
    cuda = args.device.startswith('cuda')

    def sync():
        if cuda:
            torch.cuda.synchronize()

    runs = []
    for config in args.configs:
        model, optim, cfg = build(config, args.cfg_options, args.device)
        model.train()
        data = synthetic_batch(cfg, model, args.batch)
        step = (lambda m=model, o=optim, d=data: m.train_step(d, o))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for _ in range(args.warmup):
            step()
        sync()
        memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        runs.append(dict(name=osp.splitext(osp.basename(config))[0],
                         step=step, times=[], memory=memory,
                         trainable=sum(p.numel() for p in model.parameters()
                                       if p.requires_grad)))
    for _ in range(args.rounds):
        for run in runs:
            sync()
            start = time.perf_counter()
            for _ in range(args.iters):
                run['step']()
            sync()
            run['times'].append((time.perf_counter() - start) / args.iters)

    device = torch.cuda.get_device_name() if cuda else 'cpu'
    print(f'\n{device}, batch {args.batch}, best of {args.rounds} rounds of '
          f'{args.iters} steps (median of rounds in brackets)')
    print('| config | trainable | step (s) | x first | peak memory (GiB) |')
    print('| --- | --- | --- | --- | --- |')
    base = min(runs[0]['times'])
    for run in runs:
        best = min(run['times'])
        print(f'| {run["name"]} | {run["trainable"] / 1e6:.3f}M | '
              f'{best:.4f} ({statistics.median(run["times"]):.4f}) | '
              f'{best / base:.3f} | {run["memory"]:.2f} |')


if __name__ == '__main__':
    main()
