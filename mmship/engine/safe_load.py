"""torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine 0.10.7
pickles a few of its own objects (the message hub's ``HistoryBuffer``) and
numpy values into training checkpoints, so resuming fails with "Weights only
load failed".  mmship allow-lists exactly those classes (keeping the safe
loader) instead of turning the check off."""
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def _numpy_globals():
    names = [np.ndarray, np.dtype]
    try:  # numpy >= 2 keeps the pickling helpers in numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
        names += [_reconstruct, scalar]
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
        names += [_reconstruct, scalar]
    names += [type(np.dtype(t)) for t in
              ('float64', 'float32', 'int64', 'int32', 'bool', 'uint8')]
    return names


def _history_buffer_attr(obj, name: str):
    """Stands in for ``getattr`` while unpickling, for exactly one use.

    ``HistoryBuffer.__getstate__`` saves its statistics methods
    (``HistoryBuffer.mean`` ...), which pickle protocol 2 writes as
    ``getattr(HistoryBuffer, 'mean')``.  Any other ``getattr`` is refused.
    """
    allowed = {'min', 'max', 'current', 'mean'} | set(
        HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Checkpoint asks for getattr({obj!r}, {name!r}); mmship only allows '
        f'the statistics methods of mmengine\'s HistoryBuffer.')


SAFE_GLOBALS = [HistoryBuffer] + _numpy_globals() + [
    (_history_buffer_attr, '__builtin__.getattr'),  # pickle protocol 2
    (_history_buffer_attr, 'builtins.getattr'),
]


def allow_mmengine_checkpoints() -> None:
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def torch_load(path: str, map_location='cpu'):
    allow_mmengine_checkpoints()
    return torch.load(path, map_location=map_location, weights_only=True)
