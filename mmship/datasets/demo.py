"""A tiny procedurally drawn segmentation set in ADE20K's layout.

``make_demo_shapes(root)`` writes::

    root/images/{training,validation}/shape_00000.jpg
    root/annotations/{training,validation}/shape_00000.png
    root/meta.json

Label maps follow ADE20K's ``reduce_zero_label`` convention: 0 is ignored
(here: a thin band along every shape boundary), 1..N are the classes
``background, circle, rectangle, triangle``.  Images are textured shapes
(noise, stripes or a checker board) on a textured background; each shape
class has its own hue range, so the demo learns in a few hundred CPU
iterations.  Same seed, same files (numpy + OpenCV only, no network).
"""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

CLASSES = ('background', 'circle', 'rectangle', 'triangle')
PALETTE = [[120, 120, 120], [220, 20, 60], [60, 180, 75], [0, 90, 230]]
#: hue centre (OpenCV hue, 0..180) of every shape class, in CLASSES order.
_HUES = {1: 0, 2: 60, 3: 120}
SPLITS = {'training': 0, 'validation': 1}
FORMAT_VERSION = 1


# -- textures -------------------------------------------------------------------
def _hsv_color(rng, hue: float, sat: Tuple[float, float],
               val: Tuple[float, float]) -> np.ndarray:
    """One RGB colour (float 0..1) from an OpenCV hue and s/v ranges."""
    hsv = np.array([[[hue % 180, 255 * rng.uniform(*sat),
                      255 * rng.uniform(*val)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255


def _pattern(rng, size: int) -> np.ndarray:
    """A (size, size) pattern in [0, 1]: smooth noise, stripes or checker."""
    kind = rng.integers(3)
    if kind == 0:  # smooth value noise
        cells = int(rng.integers(3, 9))
        grid = rng.random((cells, cells)).astype(np.float32)
        return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) \
            .clip(0, 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 1:  # stripes at a random angle and period
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        phase = xx * np.cos(theta) + yy * np.sin(theta)
        return 0.5 + 0.5 * np.sin(2 * np.pi * phase / period)
    cell = int(rng.integers(3, 9))  # checker board
    return (((xx // cell) + (yy // cell)) % 2).astype(np.float32)


def _texture(rng, size: int, hue: float, sat, val) -> np.ndarray:
    """A two-colour textured (size, size, 3) RGB image in [0, 1]."""
    c1 = _hsv_color(rng, hue, sat, val)
    c2 = _hsv_color(rng, hue + rng.uniform(-10, 10), sat,
                    (val[0] * 0.5, val[1] * 0.7))
    t = _pattern(rng, size)[..., None]
    return t * c1 + (1 - t) * c2


# -- shapes ---------------------------------------------------------------------
def _shape_mask(rng, label: int, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    r = rng.uniform(0.12, 0.25) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if label == 1:
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
    elif label == 2:
        w, h = r * rng.uniform(0.7, 1.3, 2)
        angle = rng.uniform(0, 90)
        box = cv2.boxPoints(((cx, cy), (2 * w, 2 * h), angle))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    else:
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + \
            rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + r * 1.2 * np.cos(angles),
                        cy + r * 1.2 * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def draw_sample(rng: np.random.Generator, size: int = 64
                ) -> Tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, uint8 label map) pair."""
    image = _texture(rng, size, rng.uniform(0, 180), (0.0, 0.25), (0.3, 0.9))
    label = np.ones((size, size), np.uint8)  # 1 = background
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, 4))  # 1..3: circle, rectangle, triangle
        mask = _shape_mask(rng, cls, size)
        tex = _texture(rng, size, _HUES[cls] + rng.uniform(-20, 20),
                       (0.55, 1.0), (0.55, 1.0))
        image[mask] = tex[mask]
        label[mask] = cls + 1
    image = image + rng.normal(0, 0.03, image.shape).astype(np.float32)
    image = (image.clip(0, 1) * 255).round().astype(np.uint8)
    # 0 (ignored) on a thin band along every label boundary, like ADE20K's
    # unlabelled pixels.
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
    label[edge] = 0
    return image, label


def make_demo_shapes(root: str, num_train: int = 64, num_val: int = 16,
                     size: int = 64, seed: int = 0) -> Dict:
    """Write the demo set under ``root`` (see the module docstring).
    Returns its meta data (also written to ``root/meta.json``)."""
    counts = {'training': num_train, 'validation': num_val}
    for split, count in counts.items():
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(count):
            rng = np.random.default_rng([seed, SPLITS[split], index])
            image, label = draw_sample(rng, size)
            name = f'shape_{index:05d}'
            ok = cv2.imwrite(osp.join(img_dir, name + '.jpg'),
                             cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, 95])
            ok &= cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
            if not ok:
                raise OSError(f'Could not write {name} under {root}.')
    meta = dict(name='demo_shapes', format_version=FORMAT_VERSION,
                seed=seed, size=size, num_train=num_train, num_val=num_val,
                classes=list(CLASSES), palette=PALETTE,
                label_convention='0 = ignore, 1..N = classes (ADE20K, '
                'reduce_zero_label=True)')
    with open(osp.join(root, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    return meta


def demo_shapes_ready(root: str, **expected) -> bool:
    """Whether ``root`` holds a complete demo set (with ``expected`` meta)."""
    path = osp.join(root, 'meta.json')
    if not osp.isfile(path):
        return False
    with open(path) as f:
        meta = json.load(f)
    if meta.get('format_version') != FORMAT_VERSION or any(
            meta.get(k) != v for k, v in expected.items()):
        return False
    for split, key in (('training', 'num_train'), ('validation', 'num_val')):
        for sub, ext in (('images', '.jpg'), ('annotations', '.png')):
            folder = osp.join(root, sub, split)
            if not osp.isdir(folder) or len([
                    n for n in os.listdir(folder) if n.endswith(ext)
            ]) != meta[key]:
                return False
    return True


@DATASETS.register_module()
class DemoShapesDataset(BaseSegDataset):
    """The demo shapes set: ADE20K layout and label convention
    (``reduce_zero_label=True``: 0 ignored, 1..4 -> classes 0..3)."""
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png',
                 reduce_zero_label=True, **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)

    def load_data_list(self):
        img_dir = self.data_prefix.get('img_path', '')
        if not osp.isdir(img_dir):
            raise FileNotFoundError(
                f'Demo data not found: {img_dir!r} does not exist. Generate '
                f'it with `python tools/make_demo_data.py --out '
                f'{self.data_root or "data/demo_shapes"}`.')
        return super().load_data_list()


__all__ = ['CLASSES', 'PALETTE', 'draw_sample', 'make_demo_shapes',
           'demo_shapes_ready', 'DemoShapesDataset']
