"""The prompter: what a prompt method adds to a frozen ViT.

A prompter is built by a prompted backbone from its ``prompt`` argument.  It
owns the prompt sources and the schedule (``core/prompts.py``), picks the
attention of every block, and may watch blocks to add auxiliary losses
(``ctx.losses``) during training.  Subclasses (SHIP, DA-VPT) override the
hooks; the base class is the complete VPT family.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mmengine.model import BaseModule
from mmengine.registry import DefaultScope
from torch import Tensor, nn

from mmship.registry import PROMPTERS
from .attention import PromptAttention
from .prompts import Carry, Insert, LearnablePrompts, placement_schedule


@dataclass
class PromptContext:
    """What one forward pass knows, shared by the engine and the prompter."""
    batch_size: int
    training: bool
    targets: Optional[dict] = None
    #: CLS attention over patches of the block just run, when asked for.
    cls_attn: Optional[Tensor] = None
    losses: Dict[str, Tensor] = field(default_factory=dict)


@PROMPTERS.register_module()
class Prompter(BaseModule):
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
    requires_cls_token = False
    #: Host parameters the method trains besides its own, by logical name
    #: (``core/block_ops.py``: ``cls_token``, ``ln1``, ``attn_proj_bias``,
    #: ...); the backbone resolves them to its parameter names, keeps them
    #: trainable and reports their sizes through ``host_frozen``.
    host_parts: Sequence[str] = ()

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
        super().__init__(init_cfg=init_cfg)
        self.num_layers = num_layers
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.patch_size = patch_size
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

    def check_blocks(self, blocks: Sequence[int], what: str):
        bad = [b for b in blocks if not 0 <= b < self.num_layers]
        if bad:
            raise ValueError(
                f'{what} are set for block(s) {bad}, which do not exist: the '
                f'backbone has blocks 0..{self.num_layers - 1}.')

    def _check_schedule(self):
        alive = set()
        for block, steps in enumerate(self.schedule):
            for step in steps:
                if isinstance(step, Carry) and step.source not in alive:
                    raise ValueError(
                        f'Prompts {step.source!r} are carried into block '
                        f'{block} but were not in block {block - 1}.')
            alive = {s.source for s in steps}

    # -- hooks used by the engine ---------------------------------------------
    def block_prompts(self, block: int, ctx: PromptContext, x: Tensor,
                      carried: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The prompt sets entering ``block``, in order.  ``x`` are the
        instance tokens entering it, ``carried`` the previous prompt outputs."""
        prompts = {}
        for step in self.schedule[block]:
            if isinstance(step, Insert):
                prompts[step.source] = self.sources[step.source](ctx) \
                    .to(x.dtype)
            else:
                prompts[step.source] = carried[step.source]
        return prompts

    def block_attention(self, block: int) -> PromptAttention:
        return self.attention

    def needs_cls_attention(self, block: int) -> bool:
        """Whether the engine must record the CLS attention of ``block``."""
        return False

    def needs_prompt_outputs(self, block: int) -> bool:
        """Whether ``after_block`` reads the prompt outputs of ``block``."""
        return False

    def keeps_prompt_outputs(self, block: int) -> bool:
        """Prompt outputs are computed only where a later block carries them
        or a hook reads them."""
        following = self.schedule[block + 1] if block + 1 < self.num_layers \
            else []
        return any(isinstance(s, Carry) for s in following) or \
            self.needs_prompt_outputs(block)

    def qkv_bias_delta(self, block: int) -> Optional[Tensor]:
        """A learnable addition to the block's fused qkv bias, if tuned."""
        return None

    def host_frozen(self, host_part_counts: Dict[str, int]):
        """Called once by the backbone after freezing, with the number of
        parameters each of ``host_parts`` holds on this host."""

    def after_block(self, block: int, ctx: PromptContext, ops, x_in: Tensor,
                    prompts_in: Dict[str, Tensor], x_out: Tensor,
                    prompts_out: Dict[str, Tensor]):
        """Called after every block; methods add auxiliary losses here."""

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


def build_prompter(cfg: Optional[dict], **host_args) -> Optional[Prompter]:
    if cfg is None:
        return None
    # Prompters live in mmship's own registry whatever the config's scope.
    with DefaultScope.overwrite_default_scope('mmship'):
        return PROMPTERS.build(cfg, default_args=host_args)


__all__ = ['Prompter', 'PromptContext', 'build_prompter']
