"""CUDA-graph capture of a backbone's training forward and backward.

Where the GPU outruns the Python that feeds it, the host and not the
kernels sets the step time: compiled blocks at ViT-B/16 batch 64 pay guard
checks and autograd wrappers on every call (44.4 ms a method-free step
against 15.7 ms captured on an H200; docs/performance.md).
``cuda_graph=True`` on a backbone records its training forward and backward
once per input signature (``torch.cuda.make_graphed_callables``) and then
replays them: one launch each way, however many kernels and Python calls
the method adds per block.

What capture needs, and how it is met:

* fixed shapes: one graph per signature (input shape and dtype, target
  shapes, autocast, which parameters train), at most ``MAX_GRAPHS``; other
  signatures run eagerly, with one warning;
* no host synchronisation inside the forward (``.item()``, ``nonzero``,
  boolean-mask indexing): a capture that meets one fails with an error
  naming the switch to turn off;
* parameters stay where they are: moving or casting the backbone drops its
  graphs (``PromptedBackboneMixin._apply``);
* outputs live in the graph's static buffers, overwritten by the next
  replay: a training step consumes them before the next one, as every task
  model here does.

Memory: a captured step keeps its activations in the graph's private pool
between steps (and through evaluation), about the peak of one eager step,
per signature.  Eager steps free them after the backward.

Only training forwards with autograd on and CUDA inputs are captured;
evaluation (variable image sizes in mmseg's test modes) runs eagerly.  One
process only: under DDP capture is refused (not verified yet).
"""
import contextlib
import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .attention_kernels import step_capture

#: signatures captured per backbone; further ones run eagerly
MAX_GRAPHS = 4


class _TrainingForward(nn.Module):
    """The captured callable: the backbone's forward with a fresh context,
    targets as tensors in a fixed order.  A module, so that
    ``make_graphed_callables`` takes the backbone's parameters as graph
    inputs."""

    def __init__(self, backbone: nn.Module, tensor_keys: Tuple[str, ...],
                 static_targets: Optional[dict]):
        super().__init__()
        self.backbone = backbone
        self.tensor_keys = tensor_keys
        self.static_targets = static_targets

    def forward(self, inputs: Tensor, *target_tensors: Tensor):
        targets = None if self.static_targets is None else dict(
            self.static_targets, **dict(zip(self.tensor_keys,
                                            target_tensors)))
        ctx = self.backbone.make_context(inputs.shape[0], targets)
        return self.backbone._forward(inputs, ctx), dict(ctx.losses)


class StepGraphs:
    """A backbone's captured training steps, by signature.  Not a module
    (it refers to the backbone) and not copied: a copy of the backbone
    (mmengine's EMA) captures its own."""

    def __init__(self):
        self._graphed: Dict[tuple, object] = {}
        self._warned = False

    def __deepcopy__(self, memo):
        return StepGraphs()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def __len__(self) -> int:
        return len(self._graphed)

    def clear(self):
        self._graphed.clear()

    def run(self, backbone: nn.Module, inputs: Tensor,
            targets: Optional[dict]):
        """``(outputs, losses)`` of the captured step, or None where this
        call runs eagerly."""
        if not (backbone.training and torch.is_grad_enabled()
                and inputs.is_cuda):
            return None
        tensors = {k: v for k, v in (targets or {}).items()
                   if isinstance(v, Tensor)}
        static = None if targets is None else {
            k: v for k, v in targets.items() if k not in tensors}
        keys = tuple(sorted(tensors))
        signature = (
            tuple(inputs.shape), inputs.dtype, inputs.device,
            inputs.requires_grad,
            tuple((k, tuple(tensors[k].shape), tensors[k].dtype)
                  for k in keys),
            None if static is None else tuple(sorted(static.items())),
            torch.is_autocast_enabled('cuda'),
            torch.get_autocast_dtype('cuda'),
            tuple(p.requires_grad for p in backbone.parameters()))
        graphed = self._graphed.get(signature)
        if graphed is None:
            _check_single_process()
            if len(self._graphed) >= MAX_GRAPHS:
                if not self._warned:
                    warnings.warn(
                        f'cuda_graph: {MAX_GRAPHS} input signatures are '
                        f'captured already; steps of other shapes run '
                        f'eagerly (fix the crop / batch size, or set '
                        f'drop_last=True, to keep every step captured).')
                    self._warned = True
                return None
            graphed = self._capture(backbone, inputs, tensors, keys, static)
            self._graphed[signature] = graphed
        return graphed(inputs, *(tensors[k] for k in keys))

    @staticmethod
    def _capture(backbone, inputs, tensors, keys, static):
        step = _TrainingForward(backbone, keys, static)
        sample = (inputs.detach().clone().requires_grad_(
            inputs.requires_grad), ) + tuple(tensors[k].clone() for k in keys)
        # Capture refuses autocast's weight cache; replays do not use it.
        # step_capture: the warm-up launches the kernels the capture records.
        with torch.autocast('cuda', dtype=torch.get_autocast_dtype('cuda'),
                            enabled=torch.is_autocast_enabled('cuda'),
                            cache_enabled=False), step_capture(), \
                _generator_restored_on_failure(inputs.device):
            try:
                return torch.cuda.make_graphed_callables(
                    step, sample, allow_unused_input=True)
            except torch.OutOfMemoryError:
                raise   # the pool of each signature stays resident: see top
            except (RuntimeError, AssertionError) as err:
                method = type(backbone.prompter).__name__ \
                    if backbone.prompter is not None else 'no method'
                raise RuntimeError(
                    f'cuda_graph=True: the training forward of this '
                    f'backbone ({method}) could not be captured as a CUDA '
                    f'graph. Capture needs fixed shapes and no host '
                    f'synchronisation in the forward (.item(), nonzero, '
                    f'boolean-mask indexing). Set '
                    f'model.backbone.cuda_graph=False for this model. '
                    f'Capture error: {err}') from err


@contextlib.contextmanager
def _generator_restored_on_failure(device: torch.device):
    """A capture that fails leaves the device's generator in capture mode,
    where every later random draw of the process raises: put it back."""
    rng = torch.cuda.default_generators[device.index]
    state = rng.clone_state()
    try:
        yield
    except BaseException:
        rng.graphsafe_set_state(state)
        raise


def _check_single_process():
    if dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1:
        raise RuntimeError(
            'cuda_graph=True is not supported with several processes yet '
            '(the captured backward under DDP has not been verified): set '
            'model.backbone.cuda_graph=False for distributed runs.')


__all__ = ['StepGraphs', 'MAX_GRAPHS']
