import os
import os.path as osp

import cv2
import numpy as np

from mmship.datasets.demo import (CLASSES, demo_shapes_ready, draw_sample,
                                  make_demo_shapes)


def test_draw_sample_deterministic():
    a = draw_sample(np.random.default_rng([0, 0, 3]))
    b = draw_sample(np.random.default_rng([0, 0, 3]))
    c = draw_sample(np.random.default_rng([1, 0, 3]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    image, label = a
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert label.shape == (64, 64) and label.dtype == np.uint8
    assert set(np.unique(label)) <= set(range(len(CLASSES) + 1))
    assert (label == 0).any() and (label == 1).any()  # ignore band, bg


def test_make_demo_shapes_layout(tmp_path):
    root = str(tmp_path / 'demo')
    meta = make_demo_shapes(root, num_train=5, num_val=3, seed=7)
    assert meta['classes'] == list(CLASSES)
    for split, count in (('training', 5), ('validation', 3)):
        imgs = sorted(os.listdir(osp.join(root, 'images', split)))
        anns = sorted(os.listdir(osp.join(root, 'annotations', split)))
        assert len(imgs) == len(anns) == count
        assert [i[:-4] for i in imgs] == [a[:-4] for a in anns]
        label = cv2.imread(osp.join(root, 'annotations', split, anns[0]),
                           cv2.IMREAD_UNCHANGED)
        assert label.ndim == 2 and label.max() <= len(CLASSES)
    assert demo_shapes_ready(root, seed=7)
    assert not demo_shapes_ready(root, seed=8)
    # same seed, same files
    again = str(tmp_path / 'again')
    make_demo_shapes(again, num_train=5, num_val=3, seed=7)
    for sub in ('images/training', 'annotations/validation'):
        for name in os.listdir(osp.join(root, sub)):
            with open(osp.join(root, sub, name), 'rb') as f1, \
                    open(osp.join(again, sub, name), 'rb') as f2:
                assert f1.read() == f2.read()
    os.remove(osp.join(root, 'images', 'training', 'shape_00000.jpg'))
    assert not demo_shapes_ready(root)


def test_dataset_loads(demo_data):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    ds = DATASETS.build(dict(
        type='DemoShapesDataset', data_root=demo_data,
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True),
                  dict(type='PackSegInputs')]))
    assert len(ds) == 16
    sample = ds[0]
    seg = sample['data_samples'].gt_sem_seg.data
    values = set(seg.unique().tolist())
    # reduce_zero_label: 0 -> 255 (ignored), 1..4 -> 0..3
    assert values <= {0, 1, 2, 3, 255} and 255 in values
    assert ds.metainfo['classes'] == CLASSES


def test_dataset_missing_data_is_clear(tmp_path):
    import pytest
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    with pytest.raises(FileNotFoundError, match='make_demo_data'):
        DATASETS.build(dict(
            type='DemoShapesDataset', data_root=str(tmp_path / 'nope'),
            data_prefix=dict(img_path='images/training',
                             seg_map_path='annotations/training'),
            pipeline=[]))
