"""A trained prompted model, ready for inference: the checks of
tools/test.py (readable checkpoint, same model config, keys that fit), then
the weights.  Shared by tools/inference.py and
tools/analysis/visualize_attention.py."""
from mmengine.config import Config

from .checks import (check_checkpoint_config, check_checkpoint_keys,
                     load_checkpoint_file)
from .launch import build_model


def load_weights(model, path: str) -> dict:
    """Load ``path`` into ``model`` after checking it; returns its meta.

    The one place where weights enter an inference model: a later loader of
    adapter files (prompt-only safetensors + JSON) dispatches here on the
    file type and leaves the callers unchanged.
    """
    ckpt = load_checkpoint_file(path)
    state = ckpt.get('state_dict', ckpt)
    meta = ckpt.get('meta') or {}
    check_checkpoint_keys(model, state, meta, path)
    if (meta.get('mmship') or {}).get('prompt_only'):
        model.init_weights()  # the frozen backbone from its init_cfg
    state = {k[7:] if k.startswith('module.') else k: v
             for k, v in state.items()}
    model.load_state_dict(state, strict=False)  # missing keys: checked
    return meta


def init_prompted_model(cfg: Config, checkpoint: str):
    """The config's model with the checkpoint's weights, in eval mode.

    Sets ``model.cfg`` / ``model._config`` (mmseg's ``inference_model`` and
    mmpretrain's inferencers read the test pipeline there) and
    ``dataset_meta`` (classes, palette) from the checkpoint.
    """
    ckpt_meta = load_checkpoint_file(checkpoint).get('meta') or {}
    check_checkpoint_config(cfg, ckpt_meta, checkpoint)
    cfg.model.train_cfg = None
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = build_model(cfg)
    load_weights(model, checkpoint)
    model.cfg = model._config = cfg
    if 'dataset_meta' in ckpt_meta:
        model.dataset_meta = ckpt_meta['dataset_meta']
    return model.eval()


__all__ = ['load_weights', 'init_prompted_model']
