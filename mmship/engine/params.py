"""Trainable vs total parameters, as a table."""
from collections import OrderedDict

from mmengine.logging import print_log
from torch import nn


def param_groups(model: nn.Module, depth: int = 2) -> 'OrderedDict':
    """{module path (``depth`` levels): [trainable, total]}."""
    groups = OrderedDict()
    for name, param in model.named_parameters():
        parts = name.split('.')
        key = '.'.join(parts[:depth]) if len(parts) > depth else parts[0]
        if parts[:2] == ['backbone', 'prompter']:
            key = 'backbone.prompter'
        elif parts[0] == 'backbone':
            key = 'backbone (host)'
        counts = groups.setdefault(key, [0, 0])
        counts[1] += param.numel()
        if param.requires_grad:
            counts[0] += param.numel()
    return groups


def param_table(model: nn.Module) -> str:
    groups = param_groups(model)
    rows = [(k, t, n) for k, (t, n) in groups.items()]
    trainable = sum(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    rows.append(('total', trainable, total))
    width = max(len(r[0]) for r in rows)
    lines = [f'{"module":<{width}}  {"trainable":>12}  {"total":>12}',
             '-' * (width + 28)]
    for name, t, n in rows:
        lines.append(f'{name:<{width}}  {t:>12,}  {n:>12,}')
    lines.append(f'trainable: {trainable / 1e6:.4f}M of {total / 1e6:.2f}M '
                 f'({100.0 * trainable / max(total, 1):.2f}%)')
    return '\n'.join(lines)


def log_param_table(model: nn.Module) -> None:
    print_log('Parameters:\n' + param_table(model), logger='current')
