"""Checks that stop a run before anything is built or written: checkpoints
(readable, keys that fit the model, made by the same model config) and data
(root and layout present, class count matching the head)."""
import copy
import logging
import os
import re
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from .launch import _CKPT, UsageError

#: how many keys an error lists before "..."
_SHOW = 8
_SIZE_MISMATCH = re.compile(
    r'size mismatch for (\S+): copying a param with shape (.+?) from '
    r'checkpoint, the shape in current model is (.+?)\.(?:\n|$)')


def load_checkpoint_file(path: str) -> dict:
    """``torch.load`` on the CPU; an unreadable file is named in the error."""
    try:
        ckpt = torch.load(path, map_location='cpu')
    except Exception as err:  # truncated zip, not a checkpoint, ...
        raise UsageError(
            f'Checkpoint {path!r} cannot be read ({type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else ""}); it is '
            f'truncated or not a torch checkpoint. Use another checkpoint '
            f'(training saves iter_N.pth / epoch_N.pth).') from None
    if not isinstance(ckpt, dict):
        raise UsageError(f'Checkpoint {path!r} holds a {type(ckpt).__name__}'
                         f', not a dict with a state_dict.')
    return ckpt


def _listed(keys: List[str]) -> str:
    return ', '.join(keys[:_SHOW]) + (
        f' ... ({len(keys)} in all)' if len(keys) > _SHOW else '')


def check_checkpoint_keys(model: torch.nn.Module, state_dict: dict,
                          prompt_only: bool = False,
                          path: str = 'checkpoint') -> None:
    """Refuse a state dict whose keys do not fit ``model``.

    The state dict is loaded (non-strict) into a copy of ``model``, so the
    modules' own loading runs (a pending SHIP prompter builds its prompt
    sets from the checkpoint's hierarchy) and ``model`` is left as it was.
    Unexpected keys and shapes that differ are always refused.  Missing keys
    are refused too, except frozen ones (parameters with
    ``requires_grad=False`` and buffers) when ``prompt_only`` (a prompt-only
    checkpoint, ``lifecycle.is_prompt_only``: the frozen backbone is rebuilt
    from its ``init_cfg`` and its hash checked when the weights load).
    """
    state_dict = {k[7:] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    probe = copy.deepcopy(model)
    shapes = []
    try:
        result = probe.load_state_dict(state_dict, strict=False)
        missing, unexpected = result.missing_keys, result.unexpected_keys
    except RuntimeError as err:  # torch: size mismatches (error_msgs)
        shapes = [f'{k} {a} vs the model\'s {b}' for k, a, b in
                  _SIZE_MISMATCH.findall(str(err))]
        if not shapes:
            raise
        own = probe.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    missing = [k for k in missing if not (prompt_only and k not in trainable)]
    problems = []
    if unexpected:
        problems.append(f'keys the model does not have: '
                        f'{_listed(unexpected)}')
    if missing:
        problems.append(f'model keys it lacks: {_listed(missing)}')
    if shapes:
        problems.append(f'shapes that differ: {_listed(shapes)}')
    if problems:
        raise UsageError(
            f'{path} does not fit the config\'s model ('
            + '; '.join(problems) + '). It was trained with another config '
            '(e.g. another prompt method or head); use that config, or a '
            'checkpoint of this one.')


def _model_diff(a, b, prefix='model') -> List[str]:
    """Dotted keys whose values differ between the saved config tree ``a``
    and this one, ``b``.  None in ``b`` matches anything: it is filled at
    run time (SHIP's ``starts=None`` / ``prototypes=None``: computed by
    tools/train.py, which saves the files' paths, or taken from the
    checkpoint)."""
    if b is None:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key in WEIGHT_SOURCES:
                continue
            out += _model_diff(a.get(key), b.get(key), f'{prefix}.{key}')
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and \
            len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += _model_diff(x, y, f'{prefix}.{i}')
        return out
    return [] if a == b else [prefix]


#: where pretrained weights come from, not what the model is: a moved file
#: is fine, and prompt-only checkpoints check the frozen backbone by its
#: content hash when they load (mmship.engine.lifecycle)
WEIGHT_SOURCES = ('init_cfg', 'pretrained')


def check_checkpoint_config(cfg: Config, meta: Optional[dict],
                            path: str = 'checkpoint') -> None:
    """Refuse a checkpoint whose run used another model config.

    Compares the content of ``cfg.model`` with the model of the config the
    checkpoint's run saved in its meta (mmengine keeps ``meta['cfg']``),
    not file names, leaving out the weight sources (``WEIGHT_SOURCES``);
    checkpoints without a saved config pass.
    """
    text = (meta or {}).get('cfg')
    if not isinstance(text, str):
        return
    try:
        saved = Config.fromstring(text, '.py')
    except Exception:  # a config mmship cannot parse: keys still checked
        return
    if 'model' not in saved:
        return
    diff = _model_diff(saved.model.to_dict(), cfg.model.to_dict())
    if diff:
        raise UsageError(
            f'{path} was trained with another model config: '
            f'{_listed(diff)} differ from this config. Use the config of '
            f'that run (its work dir keeps a copy) or a checkpoint of this '
            f'config.')


def latest_readable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that loads, or None; skipped
    unreadable ones are warned about (``--resume`` without a file)."""
    if not osp.isdir(work_dir):
        return None
    names = [n for n in os.listdir(work_dir) if _CKPT.match(n)]
    names.sort(key=lambda n: int(n.split('_')[1][:-4]), reverse=True)
    for name in names:
        path = osp.join(work_dir, name)
        try:
            load_checkpoint_file(path)
        except UsageError as err:
            print_log(f'--resume: skipping {path}: {err}', logger='current',
                      level=logging.WARNING)
            continue
        return path
    return None


# -- data ---------------------------------------------------------------------
SEG_LAYOUT = ('expected (mmseg): data_root/<img_path>/xxx{img} and '
              'data_root/<seg_map_path>/xxx{seg} (data_prefix=dict(img_path='
              '..., seg_map_path=...), img_suffix, seg_map_suffix), or an '
              'ann_file listing the names')
CLS_LAYOUT = ('expected (mmpretrain): data_root/<data_prefix>/<class>/xxx.jpg'
              ' (one folder per class), or data_root/<ann_file> with lines '
              '"path/to/image.jpg <label>"')


def _dataset_cfgs(ds):
    """The leaf dataset configs of a (wrapped) dataset config."""
    if isinstance(ds.get('dataset'), dict):
        return _dataset_cfgs(ds['dataset'])
    if isinstance(ds.get('datasets'), (list, tuple)):
        return [leaf for d in ds['datasets'] for leaf in _dataset_cfgs(d)]
    return [ds]


def _has_files(folder: str, suffix: str = '') -> bool:
    for _, _, files in os.walk(folder):
        if any(f.endswith(suffix) for f in files):
            return True
    return False


def _head_classes(cfg: Config) -> Optional[int]:
    for head in ('decode_head', 'head'):
        node = cfg.model.get(head)
        if isinstance(node, dict) and 'num_classes' in node:
            return node['num_classes']
    return None


def _dataset_classes(ds, scope: str) -> Optional[int]:
    classes = (ds.get('metainfo') or {}).get('classes')
    if classes is None:
        import importlib
        registry = importlib.import_module(f'{scope}.registry').DATASETS
        cls = registry.get(ds.get('type')) if isinstance(
            ds.get('type'), str) else ds.get('type')
        classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
    return None if classes is None else len(classes)


def _layout(ds, scope: str) -> str:
    if scope != 'mmseg':
        return CLS_LAYOUT
    return SEG_LAYOUT.format(img=ds.get('img_suffix', '.jpg'),
                             seg=ds.get('seg_map_suffix', '.png'))


def _check_dataset(ds, scope: str, where: str) -> Optional[int]:
    """Check one leaf dataset; returns its class count when known."""
    root = ds.get('data_root') or ''
    if root and (not osp.isdir(root) or not os.listdir(root)):
        state = 'is empty' if osp.isdir(root) else 'does not exist'
        raise UsageError(
            f'{where}.data_root {root!r} {state}; {_layout(ds, scope)}. Set '
            f'--cfg-options {where}.data_root=PATH (or the config\'s '
            f'data_root) or prepare the data set.')
    ann = ds.get('ann_file') or ''
    if ann and not osp.isfile(osp.join(root, ann)):
        raise UsageError(f'{where}.ann_file {osp.join(root, ann)!r} does '
                         f'not exist.')
    prefix = ds.get('data_prefix') or ''
    if scope == 'mmseg':
        img = prefix.get('img_path', '') if isinstance(prefix, dict) else ''
        suffix = ds.get('img_suffix', '.jpg')
        folder = osp.join(root, img)
        if not ann and not _has_files(folder, suffix):
            seg = prefix.get('seg_map_path', '') \
                if isinstance(prefix, dict) else ''
            raise UsageError(
                f'{where}: no *{suffix} images in {folder!r}; '
                f'{_layout(ds, scope)} (here img_path={img!r}, '
                f'seg_map_path={seg!r}).')
        return _dataset_classes(ds, scope)
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    folder = osp.join(root, prefix)
    if not ann:
        if not osp.isdir(folder) or not _has_files(folder):
            raise UsageError(f'{where}: no images in {folder!r}; '
                             f'{CLS_LAYOUT}.')
        count = _dataset_classes(ds, scope)
        if count is None:  # CustomDataset: one sub-folder per class
            count = sum(osp.isdir(osp.join(folder, n))
                        for n in os.listdir(folder)) or None
        return count
    return _dataset_classes(ds, scope)


def check_data(cfg: Config, loaders=('train', 'val', 'test')) -> None:
    """Stop when a loader's data is missing or the head's class count is
    not the data set's, before the model is built."""
    scope = cfg.get('default_scope')
    head = _head_classes(cfg)
    for loader in loaders:
        node = cfg.get(f'{loader}_dataloader')
        if not node or not isinstance(node.get('dataset'), dict):
            continue
        for ds in _dataset_cfgs(node['dataset']):
            count = _check_dataset(ds, scope, f'{loader}_dataloader.dataset')
            if head is not None and count is not None and count != head:
                key = 'decode_head' if 'decode_head' in cfg.model else 'head'
                raise UsageError(
                    f'The head predicts {head} classes (model.{key}.'
                    f'num_classes) but {loader}_dataloader\'s data set has '
                    f'{count}. Set model.{key}.num_classes={count} (and any '
                    f'auxiliary head\'s) or use the matching data set.')


__all__ = ['load_checkpoint_file', 'check_checkpoint_keys',
           'check_checkpoint_config', 'latest_readable_checkpoint',
           'check_data', 'SEG_LAYOUT', 'CLS_LAYOUT']
