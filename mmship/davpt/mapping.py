"""Class-to-prompt mapping (docs/davpt.md, "Class-to-prompt mapping").

Class means S (C x D) of a model's features, then cosine k-means of the C
means into M clusters (identity when C <= M): ``mapping[c]`` is the proxy of
class c.

Features:

* classification: the final (host-normalised) CLS token of each image,
  L2-normalised;
* segmentation: per image and class present, the patch tokens of the last
  block (host-normalised) pooled under the class's mask (soft, area-weighted
  down-sampling of the ground truth to the patch grid, ignore index
  excluded), L2-normalised.

``class_mean_norm`` says how features become the k-means input:

* ``'l2'`` (default): each image's feature is L2-normalised, a class mean is
  the mean of its images' unit features;
* ``'layer'`` (the reference code's ``kmeans_norm='layer'``, used by all its
  configs): a class mean is the mean of the raw features, then
  layer-normalised over D without affine (minus its own mean over the D
  channels, divided by their std);
* ``'none'`` (the reference's ``'none'``; its ``'l2'`` is the same under
  cosine k-means): the mean of the raw features.

k-means is cosine in every case, so only the centring of ``'layer'`` and the
weighting of images (unit vs raw norms) differ.  Images are chosen
deterministically (a seeded permutation of the data set): for classification
the first ``images_per_class`` of each class, for segmentation images are
read in that order until every class has ``images_per_class`` images or
``max_images`` have been read.
"""
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

from mmship.core.features import block_tokens, preprocessed_batches
from mmship.core.kmeans import spherical_kmeans
from .features import seg_class_features


# -- mapping ---------------------------------------------------------------------
CLASS_MEAN_NORMS = ('l2', 'layer', 'none')


def check_class_mean_norm(how: str) -> str:
    if how not in CLASS_MEAN_NORMS:
        raise ValueError(f'class_mean_norm must be one of {CLASS_MEAN_NORMS},'
                         f' got {how!r}.')
    return how


def kmeans_input(means: Tensor, class_mean_norm: str = 'l2') -> Tensor:
    """The class means as k-means sees them (before its own unit
    normalisation): layer-normalised over D (no affine) for ``'layer'``,
    unchanged otherwise."""
    check_class_mean_norm(class_mean_norm)
    means = means.float()
    if class_mean_norm == 'layer':
        return F.layer_norm(means, means.shape[1:])
    return means

@dataclass
class ClassMapping:
    mapping: Tensor                 # (C,) long
    centroids: Tensor               # (M, D) float
    counts: Tensor                  # (C,) images per class used
    moved: Optional[int] = None     # classes that changed proxy
    unseen: List[int] = field(default_factory=list)

    def clusters(self, num_proxies: int) -> List[List[int]]:
        return [[c for c, k in enumerate(self.mapping.tolist()) if k == j]
                for j in range(num_proxies)]


def cluster_classes(means: Tensor, counts: Tensor, num_proxies: int,
                    previous: Optional[Tensor] = None,
                    init_centroids: Optional[Tensor] = None,
                    seed: int = 0,
                    class_mean_norm: str = 'l2') -> ClassMapping:
    """Map C classes onto M proxies from their means.

    Identity when C <= M.  ``class_mean_norm='layer'`` layer-normalises the
    means of the classes with images before k-means (``kmeans_input``).
    Classes without any image keep their ``previous`` proxy, or get
    ``c % M`` (with a warning) when there is none.
    ``init_centroids`` (re-clustering) starts k-means from the previous
    clusters so that proxy indices keep their meaning.
    """
    num_classes = means.shape[0]
    if num_classes <= num_proxies:
        mapping = torch.arange(num_classes)
        cent = torch.zeros(num_proxies, means.shape[1])
        cent[:num_classes] = F.normalize(means.float().cpu(), dim=1)
        return ClassMapping(mapping, cent, counts.cpu(), moved=0)
    seen = (counts > 0).cpu()
    unseen = (~seen).nonzero().flatten().tolist()
    if int(seen.sum()) < num_proxies:
        raise ValueError(
            f'Only {int(seen.sum())} of {num_classes} classes had images, '
            f'fewer than the {num_proxies} proxies: cannot cluster. Raise '
            f'images_per_class / max_images or check the labels.')
    assign, cent = spherical_kmeans(
        kmeans_input(means.cpu()[seen], class_mean_norm), num_proxies,
        init=init_centroids, seed=seed)
    mapping = torch.empty(num_classes, dtype=torch.long)
    mapping[seen] = assign
    for c in unseen:
        mapping[c] = int(previous[c]) if previous is not None and \
            int(previous[c]) >= 0 else c % num_proxies
    if unseen:
        print_log(f'DA-VPT mapping: {len(unseen)} classes had no image and '
                  f'kept their previous proxy (or c % M): {unseen[:20]}'
                  f'{" ..." if len(unseen) > 20 else ""}',
                  logger='current', level=30)
    moved = None
    if previous is not None and bool((previous >= 0).all()):
        moved = int((mapping != previous.cpu()).sum())
    return ClassMapping(mapping, cent, counts.cpu(), moved, unseen)


# -- features --------------------------------------------------------------------
def is_segmentor(model) -> bool:
    return hasattr(model, 'decode_head')


def check_dataset_labels(dataset, num_classes: int, segmentation: bool):
    """Refuse, before training, a data set without the labels DA-VPT needs."""
    if len(dataset) == 0:
        raise ValueError('The training data set is empty.')
    info = dataset.get_data_info(0)
    key = 'seg_map_path' if segmentation else 'gt_label'
    if info.get(key) is None:
        what = 'ground-truth maps' if segmentation else 'class labels'
        raise ValueError(
            f'DA-VPT needs {what} for its metric loss and class-to-prompt '
            f'mapping, and the training data set '
            f'({type(dataset).__name__}) has none ({key!r} missing in its '
            f'data infos).')
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f'The data set has {len(classes)} classes but the '
                         f'DA-VPT prompter was built for {num_classes} '
                         f'(prompt.num_classes).')


def _classification_indices(dataset, num_classes: int, per_class: int,
                            seed: int) -> List[int]:
    order = torch.randperm(len(dataset),
                           generator=torch.Generator().manual_seed(seed))
    taken = [0] * num_classes
    chosen = []
    for i in order.tolist():
        label = int(dataset.get_data_info(i)['gt_label'])
        if 0 <= label < num_classes and taken[label] < per_class:
            taken[label] += 1
            chosen.append(i)
    return sorted(chosen)


@torch.no_grad()
def compute_class_means(model, dataset, num_classes: int, images_per_class: int = 10,
                        max_images: Optional[int] = 2000,
                        batch_size: int = 8, num_workers: int = 0,
                        with_prompts: bool = False, seed: int = 0,
                        progress: bool = True,
                        class_mean_norm: str = 'l2') -> Tuple[Tensor, Tensor]:
    """Class means (C, D) float32 (zeros for classes without images) and the
    number of images used per class (C,).  Image features are L2-normalised
    before averaging for ``class_mean_norm='l2'``, raw otherwise."""
    check_class_mean_norm(class_mean_norm)
    from tqdm import tqdm
    segmentation = is_segmentor(model)
    check_dataset_labels(dataset, num_classes, segmentation)
    if segmentation:
        order = torch.randperm(
            len(dataset), generator=torch.Generator().manual_seed(seed))
        indices = order.tolist()[:max_images] if max_images else \
            order.tolist()
    else:
        indices = _classification_indices(dataset, num_classes,
                                           images_per_class, seed)
    # Segmentation: the training-mode preprocessor pads images and ground
    # truth alike; classification: the test-mode one (no batch augments).
    batches = preprocessed_batches(
        model, dataset, indices, batch_size=batch_size,
        num_workers=num_workers, seed=None,
        training_preprocess=segmentation,
        device=next(model.backbone.parameters()).device, with_samples=True)
    was_training = model.training
    model.eval()
    sums, counts = None, torch.zeros(num_classes, dtype=torch.long)
    bar = tqdm(total=len(indices), desc='DA-VPT class means',
               disable=not progress, dynamic_ncols=True)
    try:
        for inputs, samples in batches:
            tokens, = block_tokens(model.backbone, inputs, indices=[-1],
                                   norm=True, with_method=with_prompts)
            if segmentation:
                seg_maps = torch.stack([s.gt_sem_seg.data.squeeze(0)
                                        for s in samples]).long()
                feats, image_idx, classes = seg_class_features(
                    tokens[:, 1:], seg_maps, model.backbone.prompter.patch_size,
                    num_classes, model.decode_head.ignore_index)
                # Only classes still short of images; one image at a time
                # so that a class stops at exactly images_per_class.
                keep = torch.zeros_like(classes, dtype=torch.bool)
                for b in range(inputs.shape[0]):
                    rows = (image_idx == b).nonzero().flatten()
                    for r in rows.tolist():
                        c = int(classes[r])
                        if counts[c] < images_per_class:
                            keep[r] = True
                            counts[c] += 1
                feats, labels = feats[keep], classes[keep]
            else:
                labels = torch.cat([s.gt_label for s in samples]).to(
                    tokens.device)
                feats = tokens[:, 0]
                counts += torch.bincount(labels.cpu(), minlength=num_classes)
            if class_mean_norm == 'l2':
                feats = F.normalize(feats, dim=1)
            if sums is None:
                sums = torch.zeros(num_classes, feats.shape[1],
                                   dtype=torch.float64)
            sums.index_add_(0, labels.cpu(), feats.double().cpu())
            bar.update(inputs.shape[0])
            if segmentation and bool((counts >= images_per_class).all()):
                break
    finally:
        bar.close()
        model.train(was_training)
    if sums is None:
        raise ValueError('No image was read for the DA-VPT class means.')
    means = (sums / counts.clamp(min=1)[:, None].double()).float()
    return means, counts


def compute_class_mapping(model, dataset, images_per_class: int = 10,
                          max_images: Optional[int] = 2000,
                          batch_size: int = 8, num_workers: int = 0,
                          with_prompts: bool = False, recluster: bool = False,
                          seed: int = 0, progress: bool = True,
                          class_mean_norm: str = 'l2') -> ClassMapping:
    """Class means with ``model``, clustered onto its prompter's proxies.

    ``recluster``: start k-means from the prompter's current centroids and
    count the classes that move (``ClassMapping.moved``)."""
    prompter = model.backbone.prompter
    means, counts = compute_class_means(
        model, dataset, prompter.num_classes, images_per_class,
        max_images, batch_size, num_workers, with_prompts, seed, progress,
        class_mean_norm)
    previous = prompter.class_to_proxy.detach().cpu().clone()
    init = prompter.proxy_centroids.detach().cpu() if recluster else None
    if init is not None and float(init.abs().sum()) == 0:
        init = None   # a mapping loaded without centroids: start afresh
    return cluster_classes(means, counts, prompter.num_proxies,
                           previous=previous if recluster else None,
                           init_centroids=init, seed=seed,
                           class_mean_norm=class_mean_norm)


def mapping_to_dict(result: ClassMapping, num_proxies: int,
                    class_names: Optional[Sequence[str]] = None,
                    **extra) -> dict:
    mapping = result.mapping.tolist()
    names = list(class_names) if class_names is not None else \
        [str(c) for c in range(len(mapping))]
    return dict(
        num_classes=len(mapping), num_proxies=num_proxies, mapping=mapping,
        clusters={
            str(j): [names[c] for c in members]
            for j, members in enumerate(result.clusters(num_proxies))
        },
        images_per_class=result.counts.tolist(), moved=result.moved,
        unseen_classes=result.unseen, **extra)


def save_mapping(path: str, result: ClassMapping, num_proxies: int,
                 class_names=None, centroids: bool = True, **extra) -> dict:
    data = mapping_to_dict(result, num_proxies, class_names, **extra)
    if centroids:
        data['centroids'] = result.centroids.tolist()
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
    return data


def load_mapping(path: str) -> Tuple[Tensor, Optional[Tensor]]:
    """(mapping, centroids or None) from a JSON written by ``save_mapping``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'DA-VPT mapping file {path!r} not found.')
    with open(path) as f:
        data = json.load(f)
    mapping = torch.tensor(data['mapping'], dtype=torch.long)
    cent = data.get('centroids')
    return mapping, (torch.tensor(cent, dtype=torch.float32)
                     if cent is not None else None)


__all__ = ['cluster_classes', 'kmeans_input',
           'CLASS_MEAN_NORMS', 'ClassMapping',
           'compute_class_means', 'compute_class_mapping',
           'check_dataset_labels', 'mapping_to_dict', 'save_mapping',
           'load_mapping']
