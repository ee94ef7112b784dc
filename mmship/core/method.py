"""The method contract: what a tuning method is to the engine.

The engine (``core/backbone.py``) runs a host ViT's blocks.  For every block
it makes exactly two calls on the method:

1. ``plan(block, ctx, x, carried) -> BlockPlan`` before the block: the
   prompt sets entering it, the parameter deltas it applies to the block's
   frozen weights, and the block's static ``BlockSpec`` (attention, which
   prompt outputs are kept, what to record).  Specs are computed once per
   mode (training / eval) by ``build_specs`` and cached; a method whose
   structure changes after build (a SHIP prompter receiving its hierarchy)
   calls ``reset_specs``.
2. ``after_block(block, ctx, result: BlockResult)`` after it: the instance
   tokens in and out, the kept prompt outputs, and the CLS attention / CLS
   query when the spec asked for them.  Methods add auxiliary losses to
   ``ctx.losses`` here.

A method also declares, as attributes, what it needs of its host and
task model: ``requires_cls_token``, ``needs_targets``, ``host_parts`` (host
parameters it keeps trainable) and ``delta_targets`` (the block weights its
deltas apply to).  The engine reads these attributes and nothing else.

Writing a method: subclass ``TuningMethod`` (no prompts; e.g. LoRA,
``mmship/lora``) or ``Prompter`` (the VPT family's prompt placements; SHIP,
DA-VPT), register it in ``mmship.registry.METHODS`` and override the hooks
below that it needs.  ``tests/core/test_method_contract.py`` runs the
contract suite over every registered method.
"""
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from mmengine.model import BaseModule
from torch import Tensor

from .attention import PromptAttention

#: Block weights a delta may apply to (``BlockOps``): the attention's fused
#: qkv projection and its output projection.
DELTA_TARGETS = ('qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias')


class LowRank(NamedTuple):
    """A low-rank weight delta ``scale * up @ down`` applied as a side path,
    ``x @ down.T @ up.T * scale``: no dense (out, in) delta is formed, and
    the frozen weight gets no gradient GEMM."""
    down: Tensor   # (r, in)
    up: Tensor     # (out, r)
    scale: float = 1.0


Delta = Union[Tensor, LowRank]


@dataclass
class PromptContext:
    """What one forward pass knows, shared by the engine and the method."""
    batch_size: int
    training: bool
    targets: Optional[dict] = None
    losses: Dict[str, Tensor] = field(default_factory=dict)
    #: the method's own per-forward state (e.g. SHIP keeps the CLS attention
    #: of the block before its attribute prompts here).
    memo: Dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockSpec:
    """The static part of a block's plan, fixed at build (per mode)."""
    attention: PromptAttention
    #: prompt sources whose outputs the block computes (a later block
    #: carries them, or ``after_block`` reads them); the others only lend
    #: their keys and values.
    kept: Tuple[str, ...] = ()
    record_cls_attention: bool = False
    record_cls_query: bool = False


@dataclass
class BlockPlan:
    """What the method asks of one block."""
    spec: BlockSpec
    #: prompt sets entering the block, source name -> (B, n, D), in order.
    prompts: Dict[str, Tensor] = field(default_factory=dict)
    #: ``DELTA_TARGETS`` name -> a dense delta (added to the frozen
    #: parameter) or a ``LowRank`` delta.
    deltas: Dict[str, Delta] = field(default_factory=dict)


@dataclass
class BlockResult:
    """What the engine hands the method after a block."""
    x_in: Tensor
    x_out: Tensor
    prompts_in: Dict[str, Tensor]
    #: outputs of the spec's kept sources
    prompts_out: Dict[str, Tensor]
    #: (B, N_patches) CLS attention over patches, if recorded
    cls_attn: Optional[Tensor] = None
    #: (B, D) the block's CLS query (deltas applied), if recorded
    cls_query: Optional[Tensor] = None


# Without a method every block runs plain attention.
PLAIN_SPEC = BlockSpec(attention=PromptAttention())


class TuningMethod(BaseModule):
    """Base class of every method (module docstring: the contract).

    Args:
        num_layers, embed_dims, num_heads, patch_size: filled in by the
            backbone.

    Override, as needed:
        ``build_specs(training)``: one ``BlockSpec`` per block (default:
            plain attention, nothing kept or recorded);
        ``block_prompts(block, ctx, x, carried)``: prompt sets (default
            none);
        ``block_deltas(block)``: parameter deltas (default none);
        ``after_block(block, ctx, result)``: losses (default nothing);
        ``host_frozen(counts)``: told the sizes of ``host_parts``.
    """
    #: the method reads the CLS token; hosts without one are refused.
    requires_cls_token: bool = False
    #: why, for the error message
    cls_token_reason: str = 'reads the CLS token'
    #: the task model hands labels / ground-truth maps in ``ctx.targets``
    needs_targets: bool = False
    #: host parameters the method trains besides its own, by logical name
    #: (``core/block_ops.py``: ``cls_token``, ``ln1``, ``attn_proj_bias``,
    #: ...); the backbone keeps them trainable and reports their sizes
    #: through ``host_frozen``.
    host_parts: Sequence[str] = ()
    #: the ``DELTA_TARGETS`` its deltas use (checked by the backbone)
    delta_targets: Sequence[str] = ()

    def __init__(self, num_layers: int, embed_dims: int, num_heads: int,
                 patch_size: int, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_layers = num_layers
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.patch_size = patch_size
        self._specs: Dict[bool, List[BlockSpec]] = {}

    # -- the two calls the engine makes --------------------------------------
    def plan(self, block: int, ctx: PromptContext, x: Tensor,
             carried: Dict[str, Tensor]) -> BlockPlan:
        """``x``: the instance tokens entering ``block``; ``carried``: the
        kept prompt outputs of the block before."""
        return BlockPlan(self.specs(ctx.training)[block],
                         self.block_prompts(block, ctx, x, carried),
                         self.block_deltas(block))

    def after_block(self, block: int, ctx: PromptContext,
                    result: BlockResult):
        """Called after every block; methods add auxiliary losses here."""

    # -- static parts ----------------------------------------------------------
    def specs(self, training: bool) -> List[BlockSpec]:
        training = bool(training)
        if training not in self._specs:
            specs = list(self.build_specs(training))
            if len(specs) != self.num_layers:
                raise RuntimeError(f'{type(self).__name__}.build_specs gave '
                                   f'{len(specs)} specs for '
                                   f'{self.num_layers} blocks.')
            self._specs[training] = specs
        return self._specs[training]

    def reset_specs(self):
        """Drop the cached specs (the method's structure changed)."""
        self._specs.clear()

    def build_specs(self, training: bool) -> List[BlockSpec]:
        return [PLAIN_SPEC] * self.num_layers

    # -- per-forward parts -------------------------------------------------------
    def block_prompts(self, block: int, ctx: PromptContext, x: Tensor,
                      carried: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {}

    def block_deltas(self, block: int) -> Dict[str, Delta]:
        return {}

    def host_frozen(self, host_part_counts: Dict[str, int]):
        """Called once by the backbone after freezing, with the number of
        parameters each of ``host_parts`` holds on this host."""

    @property
    def num_prompts(self) -> List[int]:
        """Prompt tokens in each block (for logs and tests)."""
        return [0] * self.num_layers


def check_blocks(blocks: Sequence[int], num_layers: int, what: str):
    bad = [b for b in blocks if not 0 <= b < num_layers]
    if bad:
        raise ValueError(
            f'{what} are set for block(s) {bad}, which do not exist: the '
            f'backbone has blocks 0..{num_layers - 1}.')


__all__ = ['TuningMethod', 'BlockSpec', 'BlockPlan', 'BlockResult',
           'PromptContext', 'LowRank', 'DELTA_TARGETS', 'PLAIN_SPEC',
           'check_blocks']
