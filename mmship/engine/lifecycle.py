"""Training checkpoints that hold what training changed, and resume that
continues bit for bit.

Prompt-only checkpoints: when the frozen backbone comes from a checkpoint
(``model.backbone.init_cfg`` of type ``Pretrained``) the frozen backbone
tensors are left out of ``state_dict``; ``checkpoint['mmship']`` records the
backbone's identity (its source and a sha256 of its tensors).  Loading
rebuilds the frozen part from ``init_cfg`` and refuses a backbone whose hash
differs.  ``full_checkpoints = True`` in a config keeps everything.

Resume: mmengine re-seeds the random generators on resume, so dropout masks
and augmentations of the resumed iterations repeat those of the first ones.
The generators' states are saved here and restored right before the first
batch of the resumed run (after mmengine's loop has skipped the batches
already trained, which runs the data pipeline).
"""
import hashlib
import random
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.runner import IterBasedTrainLoop
from torch import nn

from mmship.version import __version__

_PROMPTER = 'backbone.prompter.'


class CheckpointMismatch(RuntimeError):
    """A prompt-only checkpoint that does not fit the config's model."""


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def frozen_keys(model: nn.Module) -> list:
    """State-dict keys of the frozen backbone: backbone parameters that do
    not train, outside the prompter (whose buffers are the method's state:
    SHIP's hierarchy and prototypes, DA-VPT's class-to-proxy mapping)."""
    return [name for name, param in model.named_parameters()
            if name.startswith('backbone.') and not param.requires_grad
            and not name.startswith(_PROMPTER)]


def tensors_hash(state: Dict[str, torch.Tensor], keys) -> str:
    """sha256 over names, dtypes, shapes and bytes, in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(keys):
        tensor = state[key].detach().cpu()
        digest.update(f'{key}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        # flat: a 0-dim tensor cannot be viewed as bytes
        digest.update(tensor.reshape(-1).contiguous().view(
            torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def backbone_identity(model: nn.Module) -> dict:
    """{source, sha256, num_tensors} of a model's frozen backbone."""
    model = _unwrap(model)
    keys = frozen_keys(model)
    return dict(source=pretrained_source(model),
                sha256=tensors_hash(model.state_dict(), keys),
                num_tensors=len(keys))


def pretrained_source(model: nn.Module) -> Optional[str]:
    init_cfg = getattr(_unwrap(model).backbone, 'init_cfg', None)
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        return init_cfg.get('checkpoint')
    return None


def ensure_backbone(model: nn.Module, identity: dict, what: str) -> None:
    """Load the frozen backbone from ``init_cfg`` unless it is loaded already,
    and check it is the one ``identity`` names."""
    model = _unwrap(model)
    if backbone_identity(model)['sha256'] == identity['sha256']:
        return
    source = pretrained_source(model)
    if source is None:
        raise CheckpointMismatch(
            f'{what} holds prompts only; it needs the frozen backbone '
            f'{identity["source"]!r} through model.backbone.init_cfg = '
            f'dict(type="Pretrained", checkpoint=...), which this config '
            f'does not set. Set it, or use a full checkpoint '
            f'(tools/merge_prompts.py).')
    # test/inference runners do not initialise weights: load the backbone
    model.backbone.init_weights()
    found = backbone_identity(model)
    if found['sha256'] != identity['sha256']:
        raise CheckpointMismatch(
            f'{what} was trained on a different frozen backbone: it expects '
            f'{identity["source"]!r} (sha256 {identity["sha256"][:16]}...), '
            f'model.backbone.init_cfg gives {source!r} (sha256 '
            f'{found["sha256"][:16]}...). Point init_cfg.checkpoint at the '
            f'backbone the prompts were trained with.')


def is_prompt_only(checkpoint: dict) -> bool:
    """Whether a loaded checkpoint leaves the frozen backbone out."""
    return (checkpoint.get('mmship') or {}).get('content') == 'prompts'


def complete_state_dict(model: nn.Module, checkpoint: dict,
                        what: str) -> None:
    """Fill a prompt-only checkpoint's ``state_dict`` with the model's frozen
    backbone (after checking its hash); a key missing otherwise is an
    error that lists them."""
    if not is_prompt_only(checkpoint):
        return
    model = _unwrap(model)
    ensure_backbone(model, checkpoint['mmship']['backbone'], what)
    state = checkpoint['state_dict']
    own = model.state_dict()
    for key in frozen_keys(model):
        state.setdefault(key, own[key])
    missing = sorted(set(own) - set(state))
    if missing:
        raise CheckpointMismatch(
            f'{what} lacks {len(missing)} tensors that are not the frozen '
            f'backbone: {", ".join(missing[:20])}'
            f'{" ..." if len(missing) > 20 else ""}. It does not fit this '
            f'config\'s model.')


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = dict(
        python=random.getstate(),
        # as a tensor: the safe loader (weights_only) takes no uint32 arrays
        numpy=dict(keys=torch.from_numpy(np_state[1].astype(np.int64)),
                   pos=int(np_state[2]), has_gauss=int(np_state[3]),
                   gauss=float(np_state[4])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state['python'])
    np_state = state['numpy']
    np.random.set_state(('MT19937', np_state['keys'].numpy().astype(
        np.uint32), np_state['pos'], np_state['has_gauss'],
        np_state['gauss']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfter:
    """Dataloader iterator that restores random states after ``skip``
    batches: the batches an iteration-based resume skips."""

    def __init__(self, iterator, skip: int, state: dict):
        self.iterator, self.left, self.state = iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.iterator)
        self.left -= 1
        if self.left == 0:
            _set_rng_state(self.state)
        return batch

    def __getattr__(self, name):
        return getattr(self.iterator, name)


class PromptCheckpointHook(Hook):
    """Prompt-only training checkpoints, random states and mmship's metadata
    in them (see the module docstring).  tools/train.py and tools/test.py
    register it; a config may list it in ``custom_hooks`` for other
    launchers.

    Args:
        full (bool, optional): True keeps the frozen backbone in the
            checkpoints; None (default): prompt-only when the backbone comes
            from ``init_cfg`` of type Pretrained, full otherwise.
    """

    def __init__(self, full: Optional[bool] = None):
        self.full = full
        self._identity = None  # the frozen tensors do not change: hash once
        self._rng = None

    def _prompt_only(self, runner) -> bool:
        if self.full is not None:
            return not self.full
        return pretrained_source(runner.model) is not None

    def before_train(self, runner) -> None:
        if self._prompt_only(runner) and \
                pretrained_source(runner.model) is None:
            raise ValueError(
                'Prompt-only checkpoints (full_checkpoints = False) need the '
                'frozen backbone from model.backbone.init_cfg = dict(type='
                '"Pretrained", checkpoint=...); this config has none. Set '
                'it, or full_checkpoints = True.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = _unwrap(runner.model)
        if self._identity is None:
            self._identity = backbone_identity(model)
        meta = dict(version=__version__, backbone=self._identity,
                    prompt=str(runner.cfg.model.backbone.get('prompt')),
                    content='full', rng=_rng_state())
        if self._prompt_only(runner):
            meta['content'] = 'prompts'
            for key in frozen_keys(model):
                checkpoint['state_dict'].pop(key, None)
        checkpoint['mmship'] = meta

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        complete_state_dict(runner.model, checkpoint, 'The checkpoint')
        meta = checkpoint.get('mmship') or {}
        # train() loads with resume=True; test and load_from only take
        # the weights
        if runner.cfg.get('resume') and 'rng' in meta:
            self._rng = meta['rng']

    def before_train_epoch(self, runner) -> None:
        if self._rng is None:
            return
        loop = runner.train_loop
        if not isinstance(loop, IterBasedTrainLoop) or loop.iter == 0:
            _set_rng_state(self._rng)
        else:  # the loop skips loop.iter batches before the next one
            loop.dataloader_iterator = _RestoreAfter(
                loop.dataloader_iterator, loop.iter, self._rng)
        print_log('Random states restored from the checkpoint.',
                  logger='current')
        self._rng = None


def _register():
    from mmship.registry import HOOKS
    for registry in (HOOKS, MMENGINE_HOOKS):
        if 'PromptCheckpointHook' not in registry.module_dict:
            registry.register_module(module=PromptCheckpointHook)


_register()


def register(runner) -> None:
    """Add PromptCheckpointHook unless the config lists it already; config
    key ``full_checkpoints`` (True/False) overrides the default."""
    if any(isinstance(h, PromptCheckpointHook) for h in runner.hooks):
        return
    runner.register_hook(
        PromptCheckpointHook(full=runner.cfg.get('full_checkpoints')))


# -- adapters: the deployable part of a checkpoint ----------------------------
def read_prompts(path: str, model: nn.Module):
    """(tensors without the frozen backbone, backbone identity, meta, the
    frozen backbone tensors the file holds) of a training checkpoint
    (prompt-only: none held; full) or an exported adapter (``.safetensors``
    with its ``.json`` sidecar; none held)."""
    import json
    import os.path as osp
    model = _unwrap(model)
    frozen = frozen_keys(model)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        sidecar = osp.splitext(path)[0] + '.json'
        if not osp.isfile(sidecar):
            raise FileNotFoundError(
                f'Adapter {path} has no sidecar {sidecar} (written next to '
                f'it by tools/export_prompts.py); it names the frozen '
                f'backbone the prompts need.')
        with open(sidecar) as f:
            meta = json.load(f)
        return load_file(path), meta['backbone'], meta, {}
    from mmship.engine.safe_load import torch_load
    checkpoint = torch_load(path)
    state = checkpoint.get('state_dict', checkpoint)
    meta = checkpoint.get('mmship') or {}
    if meta.get('content') == 'prompts':
        identity = meta['backbone']
    else:  # a full checkpoint: the backbone it holds is its identity
        missing = [k for k in frozen if k not in state]
        if missing:
            raise CheckpointMismatch(
                f'{path} is neither a prompt-only mmship checkpoint nor a '
                f'full one: it lacks {len(missing)} frozen backbone tensors '
                f'({", ".join(missing[:5])} ...).')
        identity = dict(source=pretrained_source(model),
                        sha256=tensors_hash(state, frozen),
                        num_tensors=len(frozen))
    prompts = {k: v for k, v in state.items() if k not in set(frozen)}
    held = {k: v for k, v in state.items() if k in set(frozen)}
    meta = dict(meta, dataset_meta=(checkpoint.get('meta') or {}).get(
        'dataset_meta'), iter=(checkpoint.get('meta') or {}).get('iter'))
    return prompts, identity, meta, held
