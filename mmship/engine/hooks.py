"""Training stops on the first non-finite loss instead of training on NaNs."""
import math

from mmengine.hooks import Hook
from mmengine.registry import HOOKS as MMENGINE_HOOKS

from mmship.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; its message says which and when."""


class NonFiniteLossHook(Hook):
    """Stop training when the total loss or any loss term is not finite.

    Checks the logged loss terms (``loss``, ``decode.loss_ce``,
    ``loss_davpt_*``, ...) after every iteration and raises
    :class:`NonFiniteLossError` naming the term, the iteration and the last
    checkpoint saved before it.  It runs before the CheckpointHook, so the
    broken weights of that iteration are never saved.
    tools/train.py adds it to every run; ``custom_hooks`` may set it
    explicitly, as the _base_ runtimes do.
    """
    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        outputs = outputs or {}
        # the terms first, so the message names the one that broke
        names = [n for n in outputs if 'loss' in n and n != 'loss']
        for name in names + ['loss'] * ('loss' in outputs):
            value = outputs[name]
            value = float(value.detach().float().mean()) \
                if hasattr(value, 'detach') else float(value)
            if math.isfinite(value):
                continue
            from mmship.engine.launch import latest_checkpoint
            last = latest_checkpoint(runner.work_dir)
            raise NonFiniteLossError(
                f'Loss term {name!r} is {value} at iteration {runner.iter + 1}'
                f'; training stopped. Last good checkpoint: '
                f'{last or "none (none was saved yet)"}. Lower the learning '
                f'rate (optim_wrapper.optimizer.lr) or add gradient clipping '
                f'(optim_wrapper.clip_grad=dict(max_norm=1.0)), then resume '
                f'from that checkpoint.')


def ensure_non_finite_hook(cfg) -> None:
    """Add NonFiniteLossHook to ``cfg.custom_hooks`` unless it is there."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('NonFiniteLossHook', NonFiniteLossHook)
               for h in hooks):
        hooks.append(dict(type='NonFiniteLossHook'))
    cfg.custom_hooks = hooks


for _registry in (HOOKS, MMENGINE_HOOKS):
    if 'NonFiniteLossHook' not in _registry.module_dict:
        _registry.register_module(module=NonFiniteLossHook)

__all__ = ['NonFiniteLossHook', 'NonFiniteLossError', 'ensure_non_finite_hook']
