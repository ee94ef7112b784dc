"""SHIP: semantic hierarchical prompt tuning (docs/ship.md, "The method").

``SHIPPrompter`` combines, each switchable:

* SIP -- one prompt set per group of the semantic hierarchy, inserted at the
  group's first block and carried through the group (``sip``);
* SSP -- one set shared by all blocks, re-inserted at every block (``ssp``);
* AP -- per-sample attribute prompts at the first block of each of the last
  ``ap_groups`` groups, from the patches the previous block's CLS attends to
  most and the attribute prototypes (``ap``);
* PML -- the prompt matching loss at the last (or a chosen) block, training
  only (``pml``);
* DA -- decoupled attention (``decoupled``, ``lambda_d``).

The ablation SIP / +DA / +SSP / +AP / +PML is these switches turned on one
after the other.
"""
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmship.core.attention import (PromptAttention, gather_tokens,
                                   top_patch_indices)
from mmship.core.method import BlockResult, PromptContext
from mmship.core.prompter import Prompter
from mmship.core.prompts import (Carry, Insert, LearnablePrompts,
                                 check_group_starts)
from mmship.registry import METHODS
from .hierarchy import HIERARCHY_TOOL, resolve_starts

PROTOTYPES_TOOL = 'tools/analysis/ship_prototypes.py'


# -- attribute prompts --------------------------------------------------------
def attribute_mixture(z: Tensor, prototypes: Tensor, tau: float) -> Tensor:
    """``softmax(cos(z, A) / tau) @ A`` for z (B, N, D), A (K, D).

    Cosines are normalised matmuls (B, N, K); nothing of size B*N*K*D is
    formed.  Computed in float32 (autocast off: the matrices are small)."""
    with torch.autocast(z.device.type, enabled=False):
        a = prototypes.float()
        cos = F.normalize(z.float(), dim=-1) @ F.normalize(a, dim=-1).t()
        return (cos / tau).softmax(dim=-1) @ a


def prompt_matching_loss(prompts: Tensor, patches: Tensor) -> Tensor:
    """``mean_i min_j (1 - cos(p_i, z_j))`` per image, averaged over the batch.

    prompts: (B, N_p, D) prompt outputs; patches: (B, N_m, D).  Computed in
    float32 (autocast off)."""
    with torch.autocast(prompts.device.type, enabled=False):
        cos = F.normalize(prompts.float(), dim=-1) @ \
            F.normalize(patches.float(), dim=-1).transpose(1, 2)
        return (1.0 - cos.amax(dim=-1)).mean()


class AttributePrompts(LearnablePrompts):
    """``P_a = (1 - lambda_a) * L_a + lambda_a * softmax(cos(z, A)/tau) @ A``
    with z the ``num_tokens`` patch tokens that the previous block's CLS
    attends to most.  ``L_a`` is the learnable ``tokens`` (same init and
    insertion dropout as other prompt sets); A is passed in (the prompter's
    buffer, shared by all AP sets)."""

    def __init__(self, num_tokens: int, embed_dims: int, patch_size: int,
                 lambda_a: float = 0.1, tau: float = 0.3,
                 dropout: float = 0.1, init: str = 'vpt'):
        super().__init__(num_tokens, embed_dims, patch_size, dropout, init)
        self.lambda_a = lambda_a
        self.tau = tau

    def forward(self, x: Tensor, cls_attn: Tensor,
                prototypes: Tensor) -> Tensor:
        idx = top_patch_indices(cls_attn, self.num_tokens)
        z = gather_tokens(x, idx)
        mix = attribute_mixture(z, prototypes, self.tau)
        tokens = self.tokens.expand(x.shape[0], -1, -1)
        return self.dropout(torch.lerp(tokens, mix.to(tokens.dtype),
                                       self.lambda_a))

    def extra_repr(self) -> str:
        return (f'num_tokens={self.num_tokens}, lambda_a={self.lambda_a}, '
                f'tau={self.tau}')


def load_prototypes(source: Union[str, Tensor, np.ndarray]) -> Tensor:
    """(K, D) float32 prototypes from a .npy / .pth file (a tensor, or a dict
    with ``prototypes``) or an array."""
    if isinstance(source, str):
        if not osp.isfile(source):
            raise FileNotFoundError(
                f'SHIP attribute prototypes {source!r} do not exist. Run '
                f'`python {PROTOTYPES_TOOL} CONFIG` (it writes this file by '
                f'default).')
        if source.endswith('.npy'):
            data = np.load(source, allow_pickle=False)
        else:
            from mmship.engine.safe_load import torch_load
            data = torch_load(source)
        if isinstance(data, dict):
            if 'prototypes' not in data:
                raise ValueError(f'{source} holds a dict without '
                                 f'`prototypes`: keys {list(data)}.')
            data = data['prototypes']
        where = source
    else:
        data, where = source, 'the given prototypes'
    data = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray)
                           else data).detach().float().cpu()
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f'Attribute prototypes must be a (K, D) matrix; '
                         f'{where} has shape {tuple(data.shape)}.')
    if not torch.isfinite(data).all():
        raise ValueError(f'{where} holds non-finite prototypes.')
    return data.clone()


# -- the prompter -------------------------------------------------------------
def _missing_file(source) -> bool:
    return isinstance(source, str) and not osp.isfile(source)


@METHODS.register_module()
class SHIPPrompter(Prompter):
    """SHIP prompts on a frozen ViT.

    Args:
        num_layers, embed_dims, num_heads, patch_size: filled in by the
            backbone.
        starts (list[int] | str | None): first block of every group of the
            semantic hierarchy, or the path of a ``hierarchy.json`` written
            by ``tools/analysis/ship_hierarchy.py``.  Needed by SIP and AP.
            ``None`` or a file that does not exist builds the prompter
            *pending*: its group prompt sets are made from the hierarchy
            stored in a SHIP checkpoint when one is loaded (the
            ``hierarchy_starts`` buffer), or ``tools/train.py`` searches the
            hierarchy at the start of training.
        sip (bool): semantic-independent prompts, one set per group.
        num_tokens (int): tokens per SIP set (K, default 50).
        ssp (bool): semantic-shared prompts.
        ssp_tokens (int): tokens of the shared set (default 10).
        ap (bool): attribute prompts.
        ap_groups (int): AP enters the first block of each of the last
            ``ap_groups`` groups (M_a, default 2).
        ap_tokens (int): patches picked and AP tokens per set (N_a, 10).
        lambda_a (float): weight of the prototype mixture (0.1).
        tau (float): softmax temperature over prototype cosines (0.3).
            The reference's tau=1 makes the mixture nearly uniform over the
            prototypes.  Validation on the CIFAR-10 1k bench (frozen
            DINOv2-layout ViT-S/14, train800 -> val200, mean of 2 seeds):
            tau 1.0: 71.5, 0.3: 71.5, 0.1: 71.0, 0.03: 70.5, no AP: 71.75 --
            all within seed noise (up to 3 points); 0.3 ties for best and,
            unlike 1.0, keeps the mixture input-dependent.
        prototypes (str | Tensor | int | None): the (K, D) prototype file
            written by ``tools/analysis/ship_prototypes.py`` (or a tensor).
            An int K makes an empty (K, D) buffer.  ``None`` or a file that
            does not exist leaves the prototypes pending: they come from a
            SHIP checkpoint, or ``tools/train.py`` computes them at the start
            of training.  Training refuses prototypes that were never filled.
        pml (bool): prompt matching loss (training only).
        pml_block (int): block whose prompt outputs are matched (default the
            last; negative indices count from the end).
        pml_tokens (int): top-CLS-attention patches matched (N_m, 10).
        lambda_m (float): loss weight (0.5).
        pml_detach_patches (bool): stop the loss's gradient through the
            patch outputs (they are then fixed targets of the prompts).
        decoupled (bool): decoupled attention; False is VPT's attention.
        lambda_d (float): weight of the instance-to-prompt branch (0.1).
        prompt_update (str): how prompts are updated in blocks other than
            the PML block.  ``'attend'`` (default): prompt queries attend
            over instances and prompts in every block.  ``'bypass'`` (the
            SHIP reference): prompts skip attention there -- their attention
            output is their own ``LN1(p)``, then the block's projection,
            residual and FFN -- so they depend on no instance token; only the
            PML block (with ``pml=True``) lets them attend.
        dropout (float): prompt dropout at insertion (every prompt set).
        init (str): ``'vpt'`` (default) or ``'xavier'`` (SHIP reference).
    """

    def __init__(self,
                 num_layers: int,
                 embed_dims: int,
                 num_heads: int,
                 patch_size: int,
                 starts: Union[None, str, Sequence[int]] = None,
                 sip: bool = True,
                 num_tokens: int = 50,
                 ssp: bool = True,
                 ssp_tokens: int = 10,
                 ap: bool = True,
                 ap_groups: int = 2,
                 ap_tokens: int = 10,
                 lambda_a: float = 0.1,
                 tau: float = 0.3,
                 prototypes: Union[None, str, Tensor, int] = None,
                 pml: bool = True,
                 pml_block: int = -1,
                 pml_tokens: int = 10,
                 lambda_m: float = 0.5,
                 pml_detach_patches: bool = False,
                 decoupled: bool = True,
                 lambda_d: float = 0.1,
                 prompt_update: str = 'attend',
                 dropout: float = 0.1,
                 init: str = 'vpt',
                 init_cfg=None):
        super().__init__(num_layers, embed_dims, num_heads, patch_size,
                         placements=(),
                         attention=dict(decoupled=decoupled,
                                        lambda_d=lambda_d),
                         dropout=dropout, init=init, init_cfg=init_cfg)
        self.sip, self.ssp, self.ap, self.pml = sip, ssp, ap, pml
        # AP and PML rank patches by CLS attention.
        self.requires_cls_token = ap or pml
        self.cls_token_reason = 'ranks patches by CLS attention (AP, PML)'
        if prompt_update not in PromptAttention.PROMPT_UPDATES:
            raise ValueError(f'prompt_update must be one of '
                             f'{PromptAttention.PROMPT_UPDATES}, got '
                             f'{prompt_update!r}.')
        self.prompt_update = prompt_update
        # prompts outside the PML block (the module holds no parameters)
        self.outside_attention = self.attention if prompt_update == 'attend' \
            else PromptAttention(decoupled=decoupled, lambda_d=lambda_d,
                                 prompt_update='bypass')
        # moves with .to()/.cuda(): where sources made later must live
        self.register_buffer('_anchor', torch.empty(0), persistent=False)

        self._parts = dict(num_tokens=num_tokens, ssp_tokens=ssp_tokens,
                           ap_groups=ap_groups, ap_tokens=ap_tokens,
                           lambda_a=lambda_a, tau=tau, dropout=dropout,
                           init=init)
        if ap:
            if ap_groups < 1:
                raise ValueError(f'ap_groups must be at least 1, got '
                                 f'{ap_groups}.')
            if tau <= 0:
                raise ValueError(f'tau must be positive, got {tau}.')
        elif prototypes is not None:
            raise ValueError('`prototypes` are given but ap=False: drop them '
                             'or turn AP on.')

        self.pml_tokens = pml_tokens
        self.lambda_m = lambda_m
        self.pml_detach_patches = pml_detach_patches
        self.pml_block = None
        if pml:
            block = pml_block + num_layers if pml_block < 0 else pml_block
            self.check_blocks([block], f'PML (pml_block={pml_block})')
            self.pml_block = block

        # prototypes: a (K, D) buffer, or None while pending
        self._prototypes_checked = False
        protos = None
        if ap and prototypes is not None and not _missing_file(prototypes):
            if isinstance(prototypes, int) and \
                    not isinstance(prototypes, bool):
                protos = torch.zeros(prototypes, self.embed_dims)
            else:
                protos = self._checked_prototypes(load_prototypes(prototypes))
        # A buffer: saved with checkpoints, not trained.
        self.register_buffer('prototypes', protos)

        # the hierarchy: every prompt set is built once it is known
        self.starts: Optional[List[int]] = None
        self.ap_starts: List[int] = []
        self._built_at_load = False
        self.register_buffer('hierarchy_starts', None)
        if not (sip or ap):
            self._build(None)
        elif starts is not None and not _missing_file(starts):
            self._build(resolve_starts(starts))

    # -- building -------------------------------------------------------------
    @property
    def pending(self) -> List[str]:
        """What the prompter still waits for: ``'hierarchy'`` and / or
        ``'prototypes'`` (empty when it is complete)."""
        missing = []
        if not self._built:
            missing.append('hierarchy')
        if self.ap and self.prototypes is None:
            missing.append('prototypes')
        return missing

    @property
    def _built(self) -> bool:
        return self.starts is not None or not (self.sip or self.ap)

    def set_hierarchy(self, starts: Union[str, Sequence[int]]):
        """Build the prompt sets of a pending prompter for ``starts`` (a list
        or a hierarchy.json)."""
        if self._built:
            raise RuntimeError(f'The SHIP hierarchy is already set '
                               f'(starts={self.starts}).')
        self._build(resolve_starts(starts))

    def set_prototypes(self, prototypes: Union[str, Tensor, np.ndarray]):
        """Fill the attribute prototypes (in place when the buffer has their
        shape, so that wrappers holding the buffer see them)."""
        if not self.ap:
            raise RuntimeError('set_prototypes: this prompter has ap=False.')
        protos = self._checked_prototypes(load_prototypes(prototypes))
        current = self.prototypes
        if current is not None and current.shape == protos.shape:
            with torch.no_grad():
                current.copy_(protos)
        else:
            self.prototypes = protos.to(self._anchor.device)
        self._prototypes_checked = False

    def _checked_prototypes(self, protos: Tensor) -> Tensor:
        if protos.shape[1] != self.embed_dims:
            raise ValueError(
                f'Attribute prototypes are {protos.shape[1]}-dim but the '
                f'backbone is {self.embed_dims}-dim: they were computed with '
                f'another backbone; rerun {PROTOTYPES_TOOL} with this config.')
        return protos

    def _build(self, starts: Optional[List[int]]):
        """Every prompt set and the schedule, in one fixed order (SIP, SSP,
        AP), whenever the hierarchy becomes known."""
        p = self._parts
        if starts is not None:
            self.starts = check_group_starts(starts, self.num_layers)
            self.hierarchy_starts = torch.tensor(
                self.starts, dtype=torch.long, device=self._anchor.device)
            if self.ap:
                self._check_ap_groups(p['ap_groups'])
        if self.sip:
            self.add_placement('group', p['num_tokens'], name='sip',
                               starts=self.starts, dropout=p['dropout'],
                               init=p['init'])
        if self.ssp:
            self.add_placement('shared', p['ssp_tokens'], name='ssp',
                               dropout=p['dropout'], init=p['init'])
        if self.ap:
            self._build_ap(p['ap_groups'], p['ap_tokens'], p['lambda_a'],
                           p['tau'], p['dropout'], p['init'])
        if self.pml and not self.schedule[self.pml_block]:
            raise ValueError(f'PML matches the prompt outputs of block '
                             f'{self.pml_block}, which has no prompts.')
        # sources made after .to() / .eval() follow the prompter
        self.sources.to(device=self._anchor.device,
                        dtype=self._anchor.dtype)
        self.sources.train(self.training)

    def _check_ap_groups(self, ap_groups):
        num_groups = len(self.starts)
        if num_groups < ap_groups + 1:
            raise ValueError(
                f'AP is placed at the first block of each of the last '
                f'{ap_groups} groups and needs the CLS attention of the '
                f'block before, so it needs at least {ap_groups + 1} groups; '
                f'the hierarchy starts={self.starts} has {num_groups}. Lower '
                f'ap_groups, raise the hierarchy threshold (or ask the search '
                f'for more groups: ship_offline num_groups), or set ap=False.')

    def _build_ap(self, ap_groups, ap_tokens, lambda_a, tau, dropout, init):
        starts, ends = self.starts, self.starts[1:] + [self.num_layers]
        for s, e in list(zip(starts, ends))[-ap_groups:]:
            key = f'ap_{s}'
            steps = [(s, Insert(key))] + \
                [(i, Carry(key)) for i in range(s + 1, e)]
            self.add_source(
                key,
                AttributePrompts(ap_tokens, self.embed_dims, self.patch_size,
                                 lambda_a=lambda_a, tau=tau, dropout=dropout,
                                 init=init), steps)
            self.ap_starts.append(s)

    # -- checkpoints ----------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        """A pending prompter takes its hierarchy and prototypes from the
        state dict: the prompt sets are built here, before torch / mmengine
        load the children, so their parameters load as usual."""
        key = prefix + 'hierarchy_starts'
        if key in state_dict and (self.sip or self.ap):
            stored = [int(s) for s in state_dict[key].flatten().tolist()]
            if not self._built:
                self._build(stored)
                self._built_at_load = True
            elif stored != self.starts:
                raise RuntimeError(
                    f'The checkpoint was trained with the SHIP hierarchy '
                    f'starts={stored}, but the model was built with '
                    f'starts={self.starts}. Build it with the checkpoint\'s '
                    f'hierarchy (model.backbone.prompt.starts=None takes it '
                    f'from the checkpoint).')
        elif not self._built and (self.sip or self.ap):
            missing_keys.append(key)
        pkey = prefix + 'prototypes'
        if self.ap and self.prototypes is None:
            if pkey in state_dict:
                self.prototypes = torch.zeros(
                    state_dict[pkey].shape, device=self._anchor.device)
            else:
                missing_keys.append(pkey)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- hooks ----------------------------------------------------------------
    def _warn_built_at_load(self):
        from mmengine.logging import print_log
        print_log(
            'SHIP: the group prompt sets were made when a checkpoint was '
            'loaded into a pending prompter; an optimizer built before that '
            '(mmengine load_from / resume) does not hold them. To train, '
            'give the hierarchy in the config (tools/train.py does that by '
            'itself) or build the optimizer after loading.',
            logger='current', level=logging.WARNING)
        self._built_at_load = False  # once

    def _check_ready(self):
        missing = self.pending
        if missing:
            raise RuntimeError(
                f'The SHIP prompter is pending: its {" and ".join(missing)} '
                f'{"is" if len(missing) == 1 else "are"} not set (the config '
                f'gives none, or names a file that does not exist). Load a '
                f'SHIP checkpoint (it holds both), train with tools/train.py '
                f'(it computes them at the start), run {HIERARCHY_TOOL} / '
                f'{PROTOTYPES_TOOL} and name their files in the config, or '
                f'call set_hierarchy() / set_prototypes().')

    def block_prompts(self, block: int, ctx: PromptContext, x: Tensor,
                      carried: Dict[str, Tensor]) -> Dict[str, Tensor]:
        if block == 0:
            self._check_ready()
            if self.training and self._built_at_load:
                self._warn_built_at_load()
        prompts = {}
        for step in self.schedule[block]:
            if isinstance(step, Carry):
                prompts[step.source] = carried[step.source]
                continue
            source = self.sources[step.source]
            if isinstance(source, AttributePrompts):
                self._check_prototypes()
                tokens = source(x, ctx.memo['cls_attn'], self.prototypes)
            else:
                tokens = source(ctx)
            prompts[step.source] = tokens.to(x.dtype)
        return prompts

    def block_attention(self, block: int) -> PromptAttention:
        if block == self.pml_block:
            return self.attention
        return self.outside_attention

    def records_cls_attention(self, block: int, training: bool) -> bool:
        return block + 1 in self.ap_starts or self._matches(block, training)

    def reads_prompt_outputs(self, block: int, training: bool) -> bool:
        return self._matches(block, training)

    def _matches(self, block: int, training: bool) -> bool:
        """Whether PML matches the prompt outputs of ``block``."""
        return block == self.pml_block and training

    def after_block(self, block: int, ctx: PromptContext,
                    result: BlockResult):
        if block + 1 in self.ap_starts:
            ctx.memo['cls_attn'] = result.cls_attn
        if not self._matches(block, ctx.training):
            return
        idx = top_patch_indices(result.cls_attn, self.pml_tokens)
        patches = gather_tokens(result.x_out, idx)
        if self.pml_detach_patches:
            patches = patches.detach()
        prompts = torch.cat(list(result.prompts_out.values()), dim=1)
        ctx.losses['loss_pml'] = self.lambda_m * prompt_matching_loss(
            prompts, patches)

    def _check_prototypes(self):
        """Training on never-filled prototypes (``prototypes=K`` without a
        checkpoint) would silently turn AP into a constant: refuse it (one
        check per process)."""
        if self._prototypes_checked or not self.training:
            return
        if not bool(self.prototypes.abs().sum() > 0):
            raise RuntimeError(
                'The attribute prototypes are all zero (prototypes=K makes an '
                'empty buffer for loading a checkpoint). Train with the file '
                f'written by {PROTOTYPES_TOOL}, or with prototypes=None: '
                f'tools/train.py then computes them at the start.')
        self._prototypes_checked = True

    def extra_repr(self) -> str:
        parts = [f'starts={self.starts}']
        parts += [n for n in ('sip', 'ssp', 'ap', 'pml') if getattr(self, n)]
        if self.pml:
            parts.append(f'pml_block={self.pml_block}')
        if self.prompt_update != 'attend':
            parts.append(f'prompt_update={self.prompt_update!r}')
        if self.pending:
            parts.append(f'pending={self.pending}')
        return ', '.join(parts)


__all__ = ['SHIPPrompter', 'AttributePrompts', 'attribute_mixture',
           'prompt_matching_loss', 'load_prototypes']
