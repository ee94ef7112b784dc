"""A trained prompted model, ready for inference: the checks of
tools/test.py (readable checkpoint, same model config, keys that fit), then
the weights.  Shared by tools/inference.py and
tools/analysis/visualize_attention.py."""
import copy

from mmengine.config import Config

from .lifecycle import complete_state_dict, ensure_backbone, read_prompts
from .checks import (check_checkpoint_config, check_checkpoint_keys,
                     load_checkpoint_file)
from .launch import build_model


def read_weights(model, path: str):
    """(full state dict, meta) of a training checkpoint (full or
    prompt-only) or of an adapter written by tools/export_prompts.py
    (``.safetensors`` + its ``.json`` sidecar).  Without the frozen backbone
    in the file, it comes from the model's ``init_cfg`` and its hash is
    checked against the one the prompts were trained with."""
    if path.endswith('.safetensors'):
        prompts, identity, sidecar, _ = read_prompts(path, model)
        ensure_backbone(model, identity, path)
        state = dict(model.state_dict(), **prompts)
        # the sidecar's config text plays the checkpoint meta's `cfg`
        return state, dict(cfg=sidecar.get('config'),
                           dataset_meta=sidecar.get('dataset_meta'))
    ckpt = load_checkpoint_file(path)
    if 'state_dict' not in ckpt:
        ckpt = dict(state_dict=ckpt)
    complete_state_dict(model, ckpt, path)
    state = {k[7:] if k.startswith('module.') else k: v
             for k, v in ckpt['state_dict'].items()}
    return state, ckpt.get('meta') or {}


def load_weights(model, path: str) -> dict:
    """Load a checkpoint or adapter into ``model`` after checking that its
    keys fit; returns its meta."""
    state, meta = read_weights(model, path)
    check_checkpoint_keys(model, state, path=path)
    model.load_state_dict(state, strict=False)  # missing keys: checked
    return meta


def init_prompted_model(cfg: Config, checkpoint: str):
    """The config's model with the checkpoint's weights, in eval mode.

    Sets ``model.cfg`` / ``model._config`` (mmseg's ``inference_model`` and
    mmpretrain's inferencers read the test pipeline there) and
    ``dataset_meta`` (classes, palette) from the checkpoint.
    """
    as_given = copy.deepcopy(cfg)  # the run's config is compared with this
    cfg.model.train_cfg = None
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = build_model(cfg)
    state, ckpt_meta = read_weights(model, checkpoint)
    check_checkpoint_config(as_given, ckpt_meta, checkpoint)
    check_checkpoint_keys(model, state, path=checkpoint)
    model.load_state_dict(state, strict=False)  # missing keys: checked
    model.cfg = model._config = cfg
    if 'dataset_meta' in ckpt_meta:
        model.dataset_meta = ckpt_meta['dataset_meta']
    return model.eval()


__all__ = ['read_weights', 'load_weights', 'init_prompted_model']
