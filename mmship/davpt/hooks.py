"""``DAVPTMappingHook``: the class-to-prompt mapping at the start of training,
and the optional re-clustering from epoch / iteration E on."""
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import broadcast, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS as MMENGINE_HOOKS

from .mapping import (check_class_mean_norm, check_dataset_labels,
                      compute_class_mapping,
                      is_segmentor, load_mapping, save_mapping)


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def davpt_prompter(model):
    """The DA-VPT prompter of a task model, or a clear error."""
    from .method import DAVPTPrompter
    model = _unwrap(model)
    from mmship.models.utils import method_of
    prompter = method_of(model.backbone) if hasattr(model, 'backbone') \
        else None
    if not isinstance(prompter, DAVPTPrompter):
        raise TypeError(
            f'DAVPTMappingHook needs a model whose backbone has a '
            f'DAVPTPrompter (prompt=dict(type="DAVPTPrompter", ...)); got '
            f'{type(prompter).__name__}.')
    return prompter


class DAVPTMappingHook(Hook):
    """Compute, keep and refresh DA-VPT's class-to-prompt mapping.

    Before training, unless the prompter already has a mapping (identity
    for C <= M, or loaded with a checkpoint / resumed), the class means of
    the frozen backbone (prompts and bias deltas off) are clustered onto the
    proxies; the mapping is written to ``work_dir/<filename>`` and logged.
    Under DDP rank 0 computes and broadcasts.

    Args:
        images_per_class (int): images per class for the means.
        max_images (int, optional): segmentation: stop reading images after
            this many even if some class is still short of images.
        batch_size (int): batch size of the mapping passes (default: that of
            the training loader).
        pipeline (list[dict], optional): a data pipeline to use instead of
            the training one (e.g. the test pipeline of a classification
            config: deterministic crops).  Segmentation should keep a
            pipeline that loads annotations and yields fixed-size crops.
        mapping_file (str, optional): a JSON from
            ``tools/analysis/davpt_class_mapping.py`` to load instead of
            computing.
        recluster_from (int, optional): from this epoch (``by_epoch``) or
            iteration on, recompute the class means with the current model
            (prompts on) and re-run k-means from the previous centroids,
            every ``recluster_interval`` epochs/iterations.  None: never.
        seed (int): image selection and k-means++ seed.
        class_mean_norm (str): k-means input (``mapping.py``): ``'l2'``
            (default: means of unit image features), ``'layer'`` (the
            reference: means of raw features, layer-normalised) or
            ``'none'`` (means of raw features).
    """
    priority = 'NORMAL'

    def __init__(self,
                 images_per_class: int = 10,
                 max_images: Optional[int] = 2000,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None,
                 pipeline: Optional[list] = None,
                 mapping_file: Optional[str] = None,
                 recluster_from: Optional[int] = None,
                 recluster_interval: int = 1,
                 by_epoch: bool = True,
                 filename: str = 'davpt_class_mapping.json',
                 seed: int = 0,
                 class_mean_norm: str = 'l2'):
        if images_per_class < 1:
            raise ValueError('images_per_class must be >= 1.')
        if recluster_interval < 1:
            raise ValueError('recluster_interval must be >= 1.')
        self.images_per_class = images_per_class
        self.max_images = max_images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pipeline = pipeline
        self.mapping_file = mapping_file
        self.recluster_from = recluster_from
        self.recluster_interval = recluster_interval
        self.by_epoch = by_epoch
        self.filename = filename
        self.seed = seed
        self.class_mean_norm = check_class_mean_norm(class_mean_norm)
        self._dataset = None
        #: classes moved by each re-clustering, [(epoch or iter, moved)].
        self.history = []

    # -- data -----------------------------------------------------------------------
    def _data(self, runner):
        loader = runner.train_dataloader
        if self._dataset is None:
            if self.pipeline is None:
                self._dataset = loader.dataset
            else:
                from mmengine.registry import DATASETS
                cfg = runner.cfg.train_dataloader.dataset.copy()
                cfg['pipeline'] = self.pipeline
                self._dataset = DATASETS.build(cfg)
        batch_size = self.batch_size or loader.batch_size or 1
        workers = loader.num_workers if self.num_workers is None \
            else self.num_workers
        return self._dataset, batch_size, workers

    # -- the work ---------------------------------------------------------------------
    def _compute(self, runner, recluster: bool, tag: str):
        model = _unwrap(runner.model)
        prompter = davpt_prompter(model)
        dataset, batch_size, workers = self._data(runner)
        C, M = prompter.num_classes, prompter.num_proxies
        device = prompter.class_to_proxy.device
        mapping = torch.zeros(C, dtype=torch.long, device=device)
        centroids = torch.zeros_like(prompter.proxy_centroids)
        moved = torch.full((1, ), -1, dtype=torch.long, device=device)
        result = None
        if get_rank() == 0:
            result = compute_class_mapping(
                model, dataset, self.images_per_class,
                self.max_images, batch_size, workers,
                with_prompts=recluster, recluster=recluster, seed=self.seed,
                class_mean_norm=self.class_mean_norm)
            mapping.copy_(result.mapping)
            centroids.copy_(result.centroids)
            if result.moved is not None:
                moved.fill_(result.moved)
        if get_world_size() > 1:
            broadcast(mapping, 0)
            broadcast(centroids, 0)
            broadcast(moved, 0)
        prompter.set_mapping(mapping, centroids)
        if result is not None and runner.work_dir:
            names = (getattr(dataset, 'metainfo', None) or {}).get('classes')
            save_mapping(osp.join(runner.work_dir, self.filename), result, M,
                         names, stage=tag,
                         class_mean_norm=self.class_mean_norm)
            if recluster:
                stem, ext = osp.splitext(self.filename)
                save_mapping(osp.join(runner.work_dir, f'{stem}_{tag}{ext}'),
                             result, M, names, stage=tag,
                             class_mean_norm=self.class_mean_norm)
        sizes = torch.bincount(mapping.cpu(), minlength=M).tolist()
        msg = (f'DA-VPT class-to-prompt mapping ({tag}): {C} classes -> {M} '
               f'proxies, classes per proxy {sizes}')
        if recluster:
            msg += f'; {int(moved)} classes moved'
            self.history.append((tag, int(moved)))
            runner.message_hub.update_scalar('train/davpt_moved_classes',
                                             int(moved))
        print_log(msg, logger='current')
        print_log(f'mapping: {mapping.tolist()}', logger='current')
        return int(moved)

    # -- hook points ----------------------------------------------------------------
    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        prompter = davpt_prompter(model)
        dataset, *_ = self._data(runner)
        check_dataset_labels(dataset, prompter.num_classes,
                             is_segmentor(model))
        if prompter.mapping_ready:
            how = 'identity (C <= M)' if prompter.mapping_is_identity else \
                'loaded with the checkpoint'
            print_log(f'DA-VPT class-to-prompt mapping: {how}; '
                      f'{prompter.class_to_proxy.tolist()}', logger='current')
            return
        if self.mapping_file is not None:
            mapping, centroids = load_mapping(self.mapping_file)
            prompter.set_mapping(mapping, centroids)
            print_log(f'DA-VPT class-to-prompt mapping loaded from '
                      f'{self.mapping_file}: {mapping.tolist()}',
                      logger='current')
            return
        self._compute(runner, recluster=False, tag='initial')

    def _due(self, step: int) -> bool:
        return (self.recluster_from is not None
                and step >= self.recluster_from
                and (step - self.recluster_from) %
                self.recluster_interval == 0)

    def before_train_epoch(self, runner) -> None:
        if self.by_epoch and self._due(runner.epoch) and \
                not davpt_prompter(runner.model).mapping_is_identity:
            self._compute(runner, recluster=True, tag=f'epoch_{runner.epoch}')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if not self.by_epoch and self._due(runner.iter) and \
                not davpt_prompter(runner.model).mapping_is_identity:
            self._compute(runner, recluster=True, tag=f'iter_{runner.iter}')


def _register():
    from mmship.registry import HOOKS
    for registry in (HOOKS, MMENGINE_HOOKS):
        if 'DAVPTMappingHook' not in registry.module_dict:
            registry.register_module(module=DAVPTMappingHook)


_register()

__all__ = ['DAVPTMappingHook', 'davpt_prompter']
