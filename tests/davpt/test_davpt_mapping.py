"""DA-VPT's class-to-prompt mapping: k-means, per-class pooled features of
segmentation masks, the class means of a model, the mapping hook and its
re-clustering (also under a two-process gloo group)."""
import json
import os
import os.path as osp
import socket

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from torch.utils.data import DataLoader

from mmship.davpt import (DAVPTMappingHook, class_patch_weights,
                          cluster_classes, compute_class_means,
                          pool_class_features, seg_class_features)
from mmship.davpt.mapping import (check_dataset_labels, kmeans_input,
                                  load_mapping)
from mmship.registry import HOOKS
from clusters import pairs, partition
from tiny import PRETRAIN_ARGS, SEG_ARGS

D = 32


# -- k-means ----------------------------------------------------------------------
def test_identity_mapping_when_classes_fit_the_proxies():
    means = torch.randn(4, 8)
    res = cluster_classes(means, torch.ones(4, dtype=torch.long), 10)
    assert res.mapping.tolist() == [0, 1, 2, 3]
    res = cluster_classes(torch.randn(10, 8),
                          torch.ones(10, dtype=torch.long), 10)
    assert res.mapping.tolist() == list(range(10))


def test_more_classes_than_proxies_and_unseen_classes():
    means = pairs()
    counts = torch.full((6, ), 3)
    res = cluster_classes(means, counts, 3)
    assert partition(res.mapping) == [[0, 1], [2, 3], [4, 5]]
    assert res.moved is None
    counts[5] = 0                           # class 5 never seen
    res2 = cluster_classes(means, counts, 3)
    assert res2.unseen == [5] and res2.mapping[5] == 5 % 3
    prev = res.mapping
    res3 = cluster_classes(means, counts, 3, previous=prev)
    assert res3.mapping[5] == prev[5]       # keeps its proxy


def test_reclustering_from_previous_centroids_counts_moves():
    means = pairs()
    counts = torch.full((6, ), 3)
    first = cluster_classes(means, counts, 3)
    # same means again: nothing moves, proxy indices are kept
    same = cluster_classes(means, counts, 3, previous=first.mapping,
                           init_centroids=first.centroids)
    assert same.moved == 0 and torch.equal(same.mapping, first.mapping)
    # class 0 drifts next to classes 2/3
    drift = means.clone()
    drift[0] = means[2] + 0.01
    moved = cluster_classes(drift, counts, 3, previous=first.mapping,
                            init_centroids=first.centroids)
    assert moved.moved == 1
    assert moved.mapping[0] == first.mapping[2]
    assert torch.equal(moved.mapping[1:], first.mapping[1:])


# -- segmentation features ------------------------------------------------------------
HAND_MASK = torch.tensor([[[0, 0, 1, 1],
                           [0, 255, 1, 2],
                           [2, 2, 255, 255],
                           [2, 2, 7, 1]]])   # 7: out of range, not counted


def test_patch_weights_of_a_hand_made_mask():
    w = class_patch_weights(HAND_MASK, (2, 2), num_classes=3, ignore_index=255)
    want = torch.tensor([[[0.75, 0.0, 0.0],
                          [0.0, 0.75, 0.25],
                          [0.0, 0.0, 1.0],
                          [0.0, 0.25, 0.0]]])
    torch.testing.assert_close(w, want)


def test_per_class_pooled_features_of_a_hand_made_mask():
    x = torch.randn(1, 4, 5, requires_grad=True)
    feats, img, cls = seg_class_features(x, HAND_MASK, patch_size=2,
                                         num_classes=3, ignore_index=255)
    assert img.tolist() == [0, 0, 0] and cls.tolist() == [0, 1, 2]
    p = x[0]
    want = torch.stack([p[0],
                        (0.75 * p[1] + 0.25 * p[3]) / 1.0,
                        (0.25 * p[1] + 1.0 * p[2]) / 1.25])
    torch.testing.assert_close(feats, want)
    feats.sum().backward()
    assert x.grad.abs().sum() > 0
    # an all-ignored image contributes nothing
    seg = torch.cat([HAND_MASK, torch.full_like(HAND_MASK, 255)])
    feats, img, _ = seg_class_features(torch.randn(2, 4, 5), seg, 2, 3, 255)
    assert img.tolist() == [0, 0, 0]


def test_pooled_features_under_bf16_autocast_are_fp32():
    x = torch.randn(1, 4, 5)
    w = class_patch_weights(HAND_MASK, (2, 2), 3, 255)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        feats, _, _ = pool_class_features(x.bfloat16(), w)
    assert feats.dtype == torch.float32


def test_class_sets_of_the_segmentor_match_the_mask():
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    from mmship.models.segmentor import seg_targets
    samples = []
    for m in (HAND_MASK[0], torch.full((4, 4), 255)):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=m[None].clone())
        samples.append(s)
    seg = HAND_MASK[0].clone()
    seg[3, 2] = 255                      # seg_targets wants valid labels
    samples[0].gt_sem_seg = PixelData(data=seg[None])
    t = seg_targets(samples, num_classes=3, ignore_index=255)
    assert t['class_sets'].tolist() == [[True, True, True],
                                        [False, False, False]]
    feats, img, cls = seg_class_features(torch.randn(2, 4, 5), t['seg_maps'],
                                         2, 3, 255)
    present = t['class_sets'][img, cls]
    assert present.all() and len(cls) == int(t['class_sets'].sum())


# -- class means of a model and the hook --------------------------------------------------
COLOURS = [(250, 10, 10), (235, 25, 15),     # classes 0, 1: red
           (10, 250, 10), (20, 235, 30),     # 2, 3: green
           (10, 10, 250), (30, 15, 235)]     # 4, 5: blue


class ColourDataset:
    """Solid-colour images, class = colour; an mmpretrain-like data set."""

    def __init__(self, per_class=3, colours=COLOURS, labels=True):
        self.colours = list(colours)
        self.items = [c for c in range(len(colours)) for _ in range(per_class)]
        self.labels = labels
        self.metainfo = dict(classes=[f'c{c}' for c in range(len(colours))])

    def __len__(self):
        return len(self.items)

    def get_data_info(self, i):
        return dict(gt_label=self.items[i]) if self.labels else dict(img='x')

    def __getitem__(self, i):
        from mmpretrain.structures import DataSample
        c = self.items[i]
        g = torch.Generator().manual_seed(i)
        img = torch.tensor(self.colours[c], dtype=torch.float32)[:, None, None]
        img = (img + 4 * torch.randn(3, 32, 32, generator=g)).clamp(0, 255)
        return dict(inputs=img.to(torch.uint8),
                    data_samples=DataSample().set_gt_label(c))


def _classifier(num_classes=6, num_proxies=3):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = PRETRAIN_MODELS.build(
        dict(type='PromptedImageClassifier',
             data_preprocessor=dict(type='ClsDataPreprocessor',
                                    mean=[127.5] * 3, std=[127.5] * 3),
             backbone=dict(type='PromptedViT',
                           prompt=dict(type='DAVPTPrompter',
                                       num_classes=num_classes, num_tokens=2,
                                       proxy_num_tokens=num_proxies,
                                       num_proxies=num_proxies),
                           out_type='cls_token', **PRETRAIN_ARGS),
             head=dict(type='LinearClsHead', num_classes=num_classes,
                       in_channels=D)))
    model.backbone.init_weights()
    return model


def test_class_means_of_a_classifier():
    model = _classifier()
    data = ColourDataset(per_class=4)
    means, counts = compute_class_means(model, data, 6,
                                        images_per_class=3, batch_size=5,
                                        progress=False)
    assert counts.tolist() == [3] * 6 and means.shape == (6, D)
    # the means are means of unit CLS features (after the final norm)
    assert bool((means.norm(dim=1) <= 1.0 + 1e-5).all())
    assert model.training           # mode restored
    sim = F.normalize(means, dim=1) @ F.normalize(means, dim=1).t()
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 4]


def test_class_mean_norm_layer_centres_each_mean_before_kmeans():
    """'layer' (the reference's kmeans_norm): each class mean minus its own
    mean over D, divided by its std (no affine); 'l2' / 'none' hand k-means
    the means as they are (k-means normalises them itself)."""
    means = torch.tensor([[6.0, 4.0, 5.0], [1.0, 2.0, 6.0]])
    got = kmeans_input(means, 'layer')
    row = torch.tensor([1.0, -1.0, 0.0])
    torch.testing.assert_close(got[0], row / (2.0 / 3.0 + 1e-5) ** 0.5)
    m = means[1] - 3.0
    torch.testing.assert_close(got[1], m / (m.pow(2).mean() + 1e-5) ** 0.5)
    for how in ('l2', 'none'):
        torch.testing.assert_close(kmeans_input(means, how), means)
    with pytest.raises(ValueError, match='class_mean_norm'):
        kmeans_input(means, 'batch')
    # four classes: a large common offset (+5 or -5 on every channel) and a
    # small direction (+u or -u, u = (1, -1, 0)).  Raw cosine groups them
    # by offset, the centred means by direction.
    u = torch.tensor([1.0, -1.0, 0.0])
    ones = torch.ones(3)
    means = torch.stack([5 * ones + u, -5 * ones + 1.1 * u,
                         5 * ones - u, -5 * ones - 0.9 * u])
    counts = torch.full((4, ), 10)
    raw = cluster_classes(means, counts, 2, class_mean_norm='l2')
    layer = cluster_classes(means, counts, 2, class_mean_norm='layer')
    assert partition(raw.mapping) == [[0, 2], [1, 3]]
    assert partition(layer.mapping) == [[0, 1], [2, 3]]
    assert partition(cluster_classes(means, counts, 2,
                                      class_mean_norm='none').mapping) == \
        [[0, 2], [1, 3]]


def test_class_mean_norm_decides_whether_image_features_are_unit():
    """'l2': the mean of unit image features; 'layer' / 'none': the mean of
    the raw (final-normed) CLS features, as the reference averages them."""
    model = _classifier()
    data = ColourDataset(per_class=2)
    kw = dict(images_per_class=2, batch_size=12, progress=False)
    unit, _ = compute_class_means(model, data, 6, **kw)
    raw, _ = compute_class_means(model, data, 6,
                                 class_mean_norm='layer', **kw)
    batch = pseudo_collate([data[i] for i in range(len(data))])
    inputs = model.data_preprocessor(batch, False)['inputs']
    was = model.training
    model.eval()
    with torch.no_grad():
        cls = model.backbone.forward_intermediates(
            inputs, [-1], norm=True, with_method=False)[0][:, 0]
    model.train(was)
    labels = torch.tensor(data.items)
    for c in range(6):
        torch.testing.assert_close(raw[c], cls[labels == c].mean(0),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            unit[c], F.normalize(cls[labels == c], dim=1).mean(0),
            rtol=1e-4, atol=1e-5)
    assert (raw.norm(dim=1) - unit.norm(dim=1)).abs().max() > 0.1


class FakeRunner:

    def __init__(self, model, dataset, work_dir):
        self.model = model
        self.work_dir = work_dir
        self.train_dataloader = DataLoader(dataset, batch_size=4,
                                           collate_fn=pseudo_collate)
        self.cfg = Config(dict())
        self.message_hub = MessageHub.get_instance('davpt-test')
        self.epoch = 0
        self.iter = 0


def test_hook_is_registered():
    from mmengine.registry import HOOKS as MMENGINE_HOOKS
    assert HOOKS.get('DAVPTMappingHook') is DAVPTMappingHook
    hook = MMENGINE_HOOKS.build(dict(type='DAVPTMappingHook',
                                     images_per_class=2))
    assert isinstance(hook, DAVPTMappingHook)


def test_hook_computes_saves_and_reclusters(tmp_path):
    model = _classifier()
    data = ColourDataset(per_class=3)
    runner = FakeRunner(model, data, str(tmp_path))
    prompter = model.backbone.prompter
    assert not prompter.mapping_ready
    hook = DAVPTMappingHook(images_per_class=3, recluster_from=2,
                            recluster_interval=2)
    hook.before_train(runner)
    assert prompter.mapping_ready
    assert partition(prompter.class_to_proxy) == [[0, 1], [2, 3], [4, 5]]
    saved = json.load(open(tmp_path / 'davpt_class_mapping.json'))
    assert saved['mapping'] == prompter.class_to_proxy.tolist()
    assert saved['stage'] == 'initial' and saved['moved'] is None
    assert sorted(map(sorted, saved['clusters'].values())) == \
        [['c0', 'c1'], ['c2', 'c3'], ['c4', 'c5']]
    first = prompter.class_to_proxy.clone()

    # epochs 0 and 1: not due yet
    for runner.epoch in (0, 1):
        hook.before_train_epoch(runner)
    assert hook.history == []
    # class 0 turns green: it moves to the proxy of classes 2/3
    data.colours[0] = (15, 240, 20)
    runner.epoch = 2
    hook.before_train_epoch(runner)
    assert hook.history == [('epoch_2', 1)]
    assert prompter.class_to_proxy[0] == first[2]
    assert torch.equal(prompter.class_to_proxy[1:], first[1:])
    assert runner.message_hub.get_scalar(
        'train/davpt_moved_classes').current() == 1
    assert osp.isfile(tmp_path / 'davpt_class_mapping_epoch_2.json')
    runner.epoch = 3                      # interval 2: not due
    hook.before_train_epoch(runner)
    assert len(hook.history) == 1
    # iteration-based schedule
    hook_it = DAVPTMappingHook(images_per_class=3, recluster_from=5,
                               recluster_interval=5, by_epoch=False)
    for runner.iter in (3, 5):
        hook_it.before_train_iter(runner, 0)
    assert hook_it.history == [('iter_5', 0)]

    # a checkpoint's mapping is kept: before_train computes nothing
    model2 = _classifier()
    model2.load_state_dict(model.state_dict())
    runner2 = FakeRunner(model2, ColourDataset(labels=True), str(tmp_path /
                                                                  'b'))
    DAVPTMappingHook().before_train(runner2)
    assert torch.equal(model2.backbone.prompter.class_to_proxy,
                       prompter.class_to_proxy)
    assert not osp.exists(tmp_path / 'b')

    # ... and a mapping file is loaded instead of computed
    model3 = _classifier()
    runner3 = FakeRunner(model3, data, None)
    DAVPTMappingHook(mapping_file=str(tmp_path / 'davpt_class_mapping.json')
                     ).before_train(runner3)
    mapping, centroids = load_mapping(str(tmp_path /
                                          'davpt_class_mapping.json'))
    assert model3.backbone.prompter.class_to_proxy.tolist() == \
        mapping.tolist()
    torch.testing.assert_close(model3.backbone.prompter.proxy_centroids,
                               centroids)


def test_hook_refuses_data_without_labels_before_training(tmp_path):
    model = _classifier()
    runner = FakeRunner(model, ColourDataset(labels=False), str(tmp_path))
    with pytest.raises(ValueError, match='needs class labels.*none'):
        DAVPTMappingHook().before_train(runner)
    # also when no mapping has to be computed (C <= M)
    model = _classifier(num_classes=6, num_proxies=6)
    runner = FakeRunner(model, ColourDataset(labels=False), str(tmp_path))
    with pytest.raises(ValueError, match='needs class labels'):
        DAVPTMappingHook().before_train(runner)
    with pytest.raises(ValueError, match='has 6 classes.*built for 8'):
        check_dataset_labels(ColourDataset(), 8, segmentation=False)
    with pytest.raises(ValueError, match='ground-truth maps'):
        check_dataset_labels(ColourDataset(), 6, segmentation=True)


def test_hook_needs_a_davpt_model(tmp_path):
    model = _classifier()
    model.backbone.prompter = None
    with pytest.raises(TypeError, match='DAVPTPrompter'):
        DAVPTMappingHook().before_train(
            FakeRunner(model, ColourDataset(), str(tmp_path)))


# -- segmentation ----------------------------------------------------------------------
class StripeSegDataset:
    """Images of two colour regions; class = colour (0 red, 1 green, 2 blue,
    3 red-ish)."""
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (235, 25, 15)]
    layouts = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)]

    def __len__(self):
        return len(self.layouts)

    def get_data_info(self, i):
        return dict(seg_map_path=f'{i}.png')

    metainfo = dict(classes=['a', 'b', 'c', 'd'])

    def __getitem__(self, i):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        a, b = self.layouts[i]
        img = torch.zeros(3, 32, 32)
        seg = torch.full((1, 32, 32), 255, dtype=torch.long)
        img[:, :, :16] = torch.tensor(self.colours[a], dtype=torch.float32)[
            :, None, None]
        img[:, :, 16:] = torch.tensor(self.colours[b], dtype=torch.float32)[
            :, None, None]
        seg[0, :, :16], seg[0, 4:, 16:] = a, b
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=seg)
        s.set_metainfo(dict(img_shape=(32, 32), ori_shape=(32, 32)))
        return dict(inputs=img.to(torch.uint8), data_samples=s)


def _segmentor(num_classes=4, num_proxies=2):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as SEG_MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = SEG_MODELS.build(dict(
        type='PromptedEncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5] * 3,
                               std=[127.5] * 3, size=(32, 32), pad_val=0,
                               seg_pad_val=255),
        backbone=dict(type='PromptedSegViT',
                      prompt=dict(type='DAVPTPrompter',
                                  num_classes=num_classes, num_tokens=2,
                                  proxy_num_tokens=num_proxies,
                                  num_proxies=num_proxies),
                      **SEG_ARGS),
        decode_head=dict(type='FCNHead', in_channels=D, channels=8,
                         num_convs=1, in_index=1, num_classes=num_classes,
                         norm_cfg=dict(type='BN'),
                         loss_decode=dict(type='CrossEntropyLoss'))))
    model.backbone.init_weights()
    return model


def test_segmentation_class_means_and_mapping(tmp_path):
    model = _segmentor()
    data = StripeSegDataset()
    means, counts = compute_class_means(model, data, 4,
                                        images_per_class=2, batch_size=2,
                                        progress=False)
    # classes stop at exactly 2 images; every class found
    assert counts.tolist() == [2, 2, 2, 2]
    runner = FakeRunner(model, data, str(tmp_path))
    DAVPTMappingHook(images_per_class=3).before_train(runner)
    mapping = model.backbone.prompter.class_to_proxy
    assert mapping.tolist() in ([0, 1, 1, 0], [1, 0, 0, 1])  # red with red
    saved = json.load(open(tmp_path / 'davpt_class_mapping.json'))
    assert saved['images_per_class'] == [3, 3, 3, 3]
    # and the segmentor trains with it
    model.train()
    batch = pseudo_collate([data[i] for i in range(2)])
    batch = model.data_preprocessor(batch, True)
    losses = model.loss(batch['inputs'], batch['data_samples'])
    assert {'loss_davpt_patch', 'loss_davpt_cls'} <= set(losses)
    sum(v for k, v in losses.items() if 'loss' in k).backward()


# -- two processes ------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank, port, work_dir, queue):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        model = _classifier()
        # rank 1 gets different data: it must not matter, rank 0 decides
        data = ColourDataset(per_class=3) if rank == 0 else \
            ColourDataset(per_class=3, colours=COLOURS[::-1])
        runner = FakeRunner(model, data, work_dir)
        DAVPTMappingHook(images_per_class=3).before_train(runner)
        p = model.backbone.prompter
        queue.put((rank, p.class_to_proxy.tolist(),
                   p.proxy_centroids.sum().item()))
    finally:
        dist.destroy_process_group()


def test_hook_under_two_processes_broadcasts_rank0(tmp_path):
    import torch.multiprocessing as mp
    # spawn: a forked child of a process that already ran OpenMP code can
    # hang in its first parallel region.
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker,
                         args=(r, port, str(tmp_path), queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, (m, c)) for r, m, c in
                   (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]
    assert partition(torch.tensor(results[0][0])) == [[0, 1], [2, 3], [4, 5]]


def test_hook_pipeline_rebuilds_the_training_set(tmp_path):
    """``pipeline=`` (classification configs pass their test pipeline) reads
    the training set through it: a mmpretrain CustomDataset of image
    folders, one per class."""
    import mmcv
    import numpy as np
    from mmengine.registry import DATASETS
    for c, colour in enumerate(COLOURS):
        os.makedirs(tmp_path / 'data' / f'c{c}')
        for i in range(3):
            img = np.full((40, 40, 3), colour[::-1], dtype=np.uint8)  # BGR
            mmcv.imwrite(img, str(tmp_path / 'data' / f'c{c}' / f'{i}.png'))
    model = _classifier()
    train_cfg = dict(type='CustomDataset', data_root=str(tmp_path / 'data'),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='RandomResizedCrop', scale=32),
                               dict(type='PackInputs')])
    runner = FakeRunner(model, DATASETS.build(train_cfg), str(tmp_path))
    runner.cfg = Config(dict(train_dataloader=dict(dataset=train_cfg)))
    test_pipeline = [dict(type='LoadImageFromFile'),
                     dict(type='Resize', scale=(32, 32)),
                     dict(type='PackInputs')]
    hook = DAVPTMappingHook(images_per_class=2, pipeline=test_pipeline)
    hook.before_train(runner)
    assert hook._dataset is not runner.train_dataloader.dataset
    assert [type(t).__name__ for t in hook._dataset.pipeline.transforms] == \
        ['LoadImageFromFile', 'Resize', 'PackInputs']
    assert partition(model.backbone.prompter.class_to_proxy) == \
        [[0, 1], [2, 3], [4, 5]]
    saved = json.load(open(tmp_path / 'davpt_class_mapping.json'))
    assert saved['images_per_class'] == [2] * 6
