"""Where a prompted ViT's CLS token looks, with and without its prompts.

    python tools/analysis/visualize_attention.py CONFIG CHECKPOINT IMAGE
        --out FILE.png [--blocks 0 5 11] [--cfg-options k=v ...]

One PNG: the image; per chosen block the CLS attention over the patches
(head mean, as SHIP's AP and PML rank them) of the frozen backbone alone
(prompter removed) and of the prompted model; for SHIP configs the patches
that AP (at every AP group start, from the block before) and PML (at its
block) select, marked on the image.  Blocks default to the first, middle
and last.
"""
import argparse
import os.path as osp
import sys
from contextlib import contextmanager

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='CLS attention of a prompted ViT, with and without '
        'prompts, and the patches SHIP selects.')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument('--blocks', type=int, nargs='+',
                        help='blocks to show (default: first, middle, last)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy')
    return parser.parse_args(argv)


@contextmanager
def recording(backbone, prompts: bool = True):
    """Record every block's CLS attention over the patches (B, N) and the
    patches AP selects, in one forward; ``prompts=False`` runs the frozen
    backbone with the prompter removed."""
    import dataclasses

    import mmship.core.backbone as engine
    import mmship.ship.method as ship
    rec = dict(attention=[], ap=[])
    block_fn, top_fn = engine.prompted_block, ship.top_patch_indices
    prompter = backbone.prompter

    def block(ops, x, plan, compiled=False):
        spec = dataclasses.replace(plan.spec, record_cls_attention=True)
        out = block_fn(ops, x, dataclasses.replace(plan, spec=spec), compiled)
        rec['attention'].append(out[2])
        return out

    def top(cls_attn, k):
        idx = top_fn(cls_attn, k)
        rec['ap'].append((len(rec['attention']), idx))
        return idx

    engine.prompted_block, ship.top_patch_indices = block, top
    if not prompts:
        backbone.prompter = None
    try:
        yield rec
    finally:
        engine.prompted_block, ship.top_patch_indices = block_fn, top_fn
        backbone.prompter = prompter


def image_batch(model, cfg, path: str):
    """(uint8 RGB image at the backbone's input size, its model input)."""
    import cv2
    import torch
    img_size = cfg.model.backbone.get('img_size', 224)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    bgr = cv2.imread(path)
    bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    data = model.data_preprocessor(
        dict(inputs=[torch.from_numpy(bgr).permute(2, 0, 1).contiguous()]),
        False)
    return bgr[..., ::-1].copy(), data['inputs']


def attention_maps(model, cfg, image_path: str):
    """{'plain': [per block (h, w)], 'prompted': [...], 'ap': [(block, idx)],
    'pml': (block, idx) or None, 'image': RGB, 'grid': (h, w)}."""
    import torch
    from mmship.core.attention import top_patch_indices
    rgb, x = image_batch(model, cfg, image_path)
    patch = cfg.model.backbone.get('patch_size', 16)
    grid = (rgb.shape[0] // patch, rgb.shape[1] // patch)
    out = dict(image=rgb, grid=grid, pml=None)
    with torch.no_grad():
        for name, prompts in (('plain', False), ('prompted', True)):
            with recording(model.backbone, prompts) as rec:
                model.backbone(x)
            out[name] = [a[0].reshape(grid) for a in rec['attention']]
            if prompts:
                out['ap'] = [(b, i[0]) for b, i in rec['ap']]
    prompter = model.backbone.prompter
    if getattr(prompter, 'pml', False) and prompter.pml_block is not None:
        attn = out['prompted'][prompter.pml_block].reshape(1, -1)
        out['pml'] = (prompter.pml_block,
                      top_patch_indices(attn, prompter.pml_tokens)[0])
    return out


def _mark(ax, indices, grid, patch, color, label):
    from matplotlib.patches import Rectangle
    for n, i in enumerate(indices.tolist()):
        r, c = divmod(i - 1, grid[1])  # index 0 is CLS
        ax.add_patch(Rectangle((c * patch - .5, r * patch - .5), patch, patch,
                               fill=False, lw=1.5, ec=color,
                               label=label if n == 0 else None))


def draw(maps, blocks, out: str, title: str = '') -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    rgb, grid = maps['image'], maps['grid']
    patch = rgb.shape[0] // grid[0]
    cols = len(blocks) + 1
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.4),
                             squeeze=False)
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title('image')
    axes[1, 0].imshow(rgb)
    axes[1, 0].set_title('SHIP selections' if maps['ap'] or maps['pml']
                         else '(no AP / PML)')
    colors = plt.cm.autumn(np.linspace(0, 1, max(len(maps['ap']), 1)))
    for (block, idx), color in zip(maps['ap'], colors):
        _mark(axes[1, 0], idx, grid, patch, color,
              f'AP at block {block} (attention of block {block - 1})')
    if maps['pml'] is not None:
        _mark(axes[1, 0], maps['pml'][1], grid, patch, 'cyan',
              f'PML at block {maps["pml"][0]}')
    if maps['ap'] or maps['pml']:
        axes[1, 0].legend(fontsize=5, loc='lower left')
    for col, block in enumerate(blocks, 1):
        # one colour scale per block: with and without prompts compare
        vmax = max(float(maps[n][block].max()) for n in ('plain', 'prompted'))
        for row, name in enumerate(('plain', 'prompted')):
            ax = axes[row, col]
            ax.imshow(rgb)
            attn = maps[name][block].float().numpy()
            ax.imshow(attn, cmap='jet', alpha=0.55, interpolation='nearest',
                      vmin=0, vmax=vmax,
                      extent=(-.5, rgb.shape[1] - .5, rgb.shape[0] - .5, -.5))
            ax.set_title(f'block {block}, '
                         f'{"no prompts" if name == "plain" else "prompted"}',
                         fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    import mmship  # noqa: F401  (registration)
    from mmship.engine.inference import init_prompted_model
    from mmship.engine.launch import UsageError, check_checkpoint, load_config
    try:
        if not args.out.endswith('.png'):
            raise UsageError(f'--out {args.out!r}: name a .png file.')
        if osp.exists(args.out):
            raise UsageError(f'--out {args.out!r} exists; it would be '
                             f'overwritten.')
        if not osp.isfile(args.image):
            raise UsageError(f'Image {args.image!r} does not exist.')
        check_checkpoint(args.checkpoint)
        cfg = load_config(args.config, args.cfg_options)
        model = init_prompted_model(cfg, args.checkpoint)
        if getattr(model.backbone, 'prompter', None) is None:
            raise UsageError(f'{args.config}: the backbone has no prompter; '
                             f'there is nothing to compare.')
        depth = len(model.backbone._block_ops)
        blocks = args.blocks or sorted({0, depth // 2, depth - 1})
        bad = [b for b in blocks if not 0 <= b < depth]
        if bad:
            raise UsageError(f'--blocks {bad}: the backbone has blocks '
                             f'0..{depth - 1}.')
    except UsageError as err:
        sys.exit(f'visualize_attention.py: error: {err}')
    maps = attention_maps(model, cfg, args.image)
    draw(maps, blocks, args.out, osp.basename(args.config))
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
