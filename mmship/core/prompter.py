"""The prompter: the VPT family on the method contract (``method.py``).

A prompter owns prompt sources and a schedule (``core/prompts.py``) and
builds every block's spec from it: a block keeps the prompt outputs that the
next block carries, or all of them where ``reads_prompt_outputs``.
Subclasses (SHIP, DA-VPT) override the small hooks below; the base class is
VPT-shallow, VPT-deep and their mixtures.
"""
from typing import Dict, List, Optional, Sequence

from mmengine.registry import DefaultScope
from torch import Tensor, nn

from mmship.registry import METHODS
from .attention import PromptAttention
from .method import BlockSpec, PromptContext, TuningMethod, check_blocks
from .prompts import Carry, Insert, LearnablePrompts, placement_schedule


@METHODS.register_module()
class Prompter(TuningMethod):
    """Prompts placed by a list of placements, with coupled or decoupled
    attention.

    Args:
        num_layers, embed_dims, num_heads, patch_size: filled in by the
            backbone.
        placements (list[dict]): each ``dict(kind=..., num_tokens=...)`` with
            kind one of ``shallow`` (inserted before block 0, carried on),
            ``deep`` (a fresh set per block; ``blocks`` limits them),
            ``shared`` (one set re-inserted at every block) or ``group``
            (one set per group, carried inside it; ``starts`` are the groups'
            first blocks).  Optional ``name``, ``init``, ``dropout``.
        attention (dict): ``PromptAttention`` arguments.
        dropout (float): prompt dropout at insertion (default of placements).
        init (str): prompt init, ``'vpt'`` or ``'xavier'``.
    """
    def __init__(self,
                 num_layers: int,
                 embed_dims: int,
                 num_heads: int,
                 patch_size: int,
                 placements: Sequence[dict] = (),
                 attention: dict = dict(decoupled=False),
                 dropout: float = 0.1,
                 init: str = 'vpt',
                 init_cfg=None):
        super().__init__(num_layers, embed_dims, num_heads, patch_size,
                         init_cfg=init_cfg)
        self.attention = PromptAttention(**attention)
        self.sources = nn.ModuleDict()
        self.schedule: List[List] = [[] for _ in range(num_layers)]
        for placement in placements:
            self.add_placement(dropout=dropout, init=init, **placement)

    # -- building -----------------------------------------------------------
    def add_placement(self, kind: str, num_tokens: int, name: str = None,
                      blocks: Sequence[int] = None, starts: Sequence[int] = None,
                      dropout: float = 0.1, init: str = 'vpt'):
        """Add learnable prompt sets placed by ``kind`` to the schedule."""
        name = name or kind
        if blocks is not None:
            self.check_blocks(blocks, f'{kind} prompts')
        plan = placement_schedule(kind, name, self.num_layers, blocks, starts)
        for source, steps in plan.items():
            self.add_source(
                source,
                LearnablePrompts(num_tokens, self.embed_dims, self.patch_size,
                                 dropout=dropout, init=init), steps)

    def add_source(self, name: str, module: nn.Module, steps):
        """Register a prompt source and its ``(block, step)`` schedule."""
        key = name.replace('.', '_')
        if key in self.sources:
            raise ValueError(f'Two prompt sets are named {key!r}; give one '
                             f'placement another `name`.')
        self.sources[key] = module
        for block, step in steps:
            self.schedule[block].append(type(step)(key))
        self._check_schedule()
        self.reset_specs()

    def check_blocks(self, blocks: Sequence[int], what: str):
        check_blocks(blocks, self.num_layers, what)

    def _check_schedule(self):
        alive = set()
        for block, steps in enumerate(self.schedule):
            for step in steps:
                if isinstance(step, Carry) and step.source not in alive:
                    raise ValueError(
                        f'Prompts {step.source!r} are carried into block '
                        f'{block} but were not in block {block - 1}.')
            alive = {s.source for s in steps}

    # -- the plan --------------------------------------------------------------
    def build_specs(self, training: bool) -> List[BlockSpec]:
        """Each block's attention, and its kept prompt outputs: those a later
        block carries, or all where ``reads_prompt_outputs``."""
        specs = []
        for block, steps in enumerate(self.schedule):
            following = self.schedule[block + 1] \
                if block + 1 < self.num_layers else []
            carried = {s.source for s in following if isinstance(s, Carry)}
            reads = self.reads_prompt_outputs(block, training)
            kept = tuple(s.source for s in steps
                         if reads or s.source in carried)
            specs.append(BlockSpec(
                attention=self.block_attention(block),
                kept=kept,
                record_cls_attention=self.records_cls_attention(
                    block, training),
                record_cls_query=self.records_cls_query(block, training)))
        return specs

    def block_attention(self, block: int) -> PromptAttention:
        return self.attention

    def reads_prompt_outputs(self, block: int, training: bool) -> bool:
        """Whether ``after_block`` reads every prompt output of ``block``."""
        return False

    def records_cls_attention(self, block: int, training: bool) -> bool:
        return False

    def records_cls_query(self, block: int, training: bool) -> bool:
        return False

    def block_prompts(self, block: int, ctx: PromptContext, x: Tensor,
                      carried: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The prompt sets entering ``block``, in order."""
        prompts = {}
        for step in self.schedule[block]:
            if isinstance(step, Insert):
                prompts[step.source] = self.sources[step.source](ctx) \
                    .to(x.dtype)
            else:
                prompts[step.source] = carried[step.source]
        return prompts

    @property
    def num_prompts(self) -> List[int]:
        """Prompt tokens in each block (for logs and tests)."""
        sizes = {}
        counts = []
        for steps in self.schedule:
            for step in steps:
                if isinstance(step, Insert):
                    sizes[step.source] = getattr(self.sources[step.source],
                                                 'num_tokens', None)
            counts.append(sum(sizes[s.source] or 0 for s in steps))
        return counts


def build_method(cfg: Optional[dict], **host_args
                 ) -> Optional[TuningMethod]:
    if cfg is None:
        return None
    # Methods live in mmship's own registry whatever the config's scope.
    with DefaultScope.overwrite_default_scope('mmship'):
        method = METHODS.build(cfg, default_args=host_args)
    if not isinstance(method, TuningMethod):
        raise TypeError(f'{type(method).__name__} is not a TuningMethod '
                        f'(mmship/core/method.py).')
    return method


__all__ = ['Prompter', 'build_method']
