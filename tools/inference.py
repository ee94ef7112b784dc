"""Predict with a trained prompted model (mmseg or mmpretrain config).

    python tools/inference.py CONFIG CHECKPOINT INPUTS... --out-dir DIR
        [--topk K] [--opacity A] [--device cpu] [--cfg-options k=v ...]

Segmentation: per image ``<name>_overlay.png`` (prediction painted over the
image) and ``<name>_labels.png`` (class index per pixel, uint8).
Classification: the top-k classes of every image printed and written to
``DIR/predictions.json``.  INPUTS are image files or folders of images.
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Predict with a trained mmship model.')
    parser.add_argument('config', help='config file of the run')
    parser.add_argument('checkpoint', help='checkpoint (full or prompt-only) '
                        'or adapter (.safetensors from tools/export_prompts.py)')
    parser.add_argument('inputs', nargs='+', help='images or image folders')
    parser.add_argument('--out-dir', required=True,
                        help='folder for the predictions (new or empty)')
    parser.add_argument('--topk', type=int, default=5,
                        help='classification: classes listed per image')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='segmentation: opacity of the painted labels')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy')
    return parser.parse_args(argv)


def find_images(inputs):
    """Image files of INPUTS (folders: their images, sorted)."""
    from mmship.engine.launch import UsageError
    images = []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(osp.join(item, n) for n in os.listdir(item)
                           if n.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise UsageError(f'Input folder {item!r} holds no images '
                                 f'({", ".join(IMAGE_SUFFIXES)}).')
            images += found
        elif osp.isfile(item):
            images.append(item)
        else:
            raise UsageError(f'Input {item!r} does not exist.')
    names = [osp.splitext(osp.basename(i))[0] for i in images]
    if len(set(names)) != len(names):
        raise UsageError('Two inputs share a file name; their predictions '
                         'would overwrite each other. Predict them in two '
                         'runs.')
    return images


def segment(model, images, out_dir, opacity):
    import cv2
    import numpy as np
    from mmseg.apis import inference_model, show_result_pyplot
    for image in images:
        result = inference_model(model, image)
        name = osp.splitext(osp.basename(image))[0]
        labels = result.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
        cv2.imwrite(osp.join(out_dir, f'{name}_labels.png'), labels)
        show_result_pyplot(model, image, result, opacity=opacity,
                           draw_gt=False, show=False, with_labels=False,
                           out_file=osp.join(out_dir, f'{name}_overlay.png'))
        print(f'{image}: {osp.join(out_dir, name)}_{{overlay,labels}}.png')


def classify(model, images, out_dir, topk):
    from mmpretrain.apis import ImageClassificationInferencer
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    inferencer = ImageClassificationInferencer(model, pretrained=False,
                                               classes=classes)
    out = {}
    for image, pred in zip(images, inferencer(images)):
        scores = pred['pred_scores']
        top = scores.argsort()[::-1][:topk]
        out[image] = [dict(label=int(i), score=round(float(scores[i]), 6),
                           **{'class': classes[i]} if classes else {})
                      for i in top]
        print(f'{image}: ' + ', '.join(
            f'{p.get("class", p["label"])} {p["score"]:.4f}'
            for p in out[image]))
    with open(osp.join(out_dir, 'predictions.json'), 'w') as f:
        json.dump(out, f, indent=2)


def main(argv=None):
    args = parse_args(argv)
    import mmship  # noqa: F401  (registration)
    from mmship.engine.inference import init_prompted_model
    from mmship.engine.launch import UsageError, check_checkpoint, load_config
    try:
        if osp.isfile(args.out_dir) or (osp.isdir(args.out_dir)
                                        and os.listdir(args.out_dir)):
            raise UsageError(f'--out-dir {args.out_dir!r} is a file or not '
                             f'empty; its files could be overwritten.')
        if args.topk < 1:
            raise UsageError('--topk must be >= 1.')
        images = find_images(args.inputs)
        check_checkpoint(args.checkpoint)
        cfg = load_config(args.config, args.cfg_options)
        model = init_prompted_model(cfg, args.checkpoint).to(args.device)
    except UsageError as err:
        sys.exit(f'tools/inference.py: error: {err}')
    os.makedirs(args.out_dir, exist_ok=True)
    if cfg.default_scope == 'mmseg':
        segment(model, images, args.out_dir, args.opacity)
    else:
        classify(model, images, args.out_dir, args.topk)


if __name__ == '__main__':
    main()
