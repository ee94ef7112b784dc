"""DA-VPT and DA-VPT+ (docs/davpt.md, "The method").

VPT-deep prompts in every block; in the *proxy blocks* (default: the last
block) the first ``num_proxies`` (M) prompts of the block's set are
metric-learning proxies.  Each class maps to one proxy (``class_to_proxy``, a
buffer saved with checkpoints, see ``mapping.py``), and two Proxy-Anchor
losses pull

* the block input's pooled patch features (patch-to-prompt, weight beta) and
* the CLS query ``W_q LN(x_cls)`` of the block (prompt-to-CLS, weight lambda)

towards the proxy of their class and away from the others.  With several
proxy blocks each loss is averaged over them (``block_reduction='mean'``, as
the reference code does).

DA-VPT+ tunes more of the frozen host, chosen by a named preset (``plus``)
and / or explicit lists:

* ``bias_tuning``: parts of the attention's fused qkv bias that get a
  learnable zero-initialised delta (``'q'``, ``'k'``, ``'v'``);
* ``host_tuning``: host parameters kept trainable, by logical name
  (``core/block_ops.py``), e.g. ``'attn_proj_bias'``, ``'ln1'``,
  ``'cls_token'``.

Presets (``PLUS_PRESETS``): ``'paper'`` = b_V; ``'reference'`` = what the
reference code's configs tune: v bias, attention projection bias, FFN fc2
bias, LN2 bias, LN1 weight and bias, CLS token.  b_K is in neither: a bias
added to every key shifts all logits of a query by the same constant, which
softmax ignores, so b_K gets zero gradient and changes nothing.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from mmship.core.method import BlockResult, PromptContext
from mmship.core.prompter import Prompter
from mmship.registry import MODELS, METHODS
from .features import seg_class_features
from .losses import class_sets_to_pos_mask, labels_to_pos_mask

QKV = ('q', 'k', 'v')

#: DA-VPT+ presets: qkv bias deltas and host parts (added to the explicit
#: ``bias_tuning`` / ``host_tuning`` lists).
PLUS_PRESETS = {
    # The paper's b_K and b_V without the inert b_K.
    'paper': dict(bias_tuning=('v', ), host_tuning=()),
    # The reference code's configs: bias_v, bias_proj, bias_fc2, bias_norm2,
    # norm_norm1 and train_cls (bias_k, set in about half of them, dropped).
    'reference': dict(bias_tuning=('v', ),
                      host_tuning=('attn_proj_bias', 'ffn_fc2_bias',
                                   'ln2_bias', 'ln1', 'cls_token')),
}
BLOCK_REDUCTIONS = ('mean', 'sum')


@METHODS.register_module()
class DAVPTPrompter(Prompter):
    """Distribution-aware prompts.

    Args:
        num_layers, embed_dims, num_heads, patch_size: filled in by the
            backbone.
        num_classes (int): classes of the task (size of ``class_to_proxy``).
        num_tokens (int): prompts per block (VPT-deep).
        num_proxies (int): M, the proxies of each proxy block: the first M
            prompts of its set.
        proxy_blocks (list[int]): blocks whose prompts are proxies; negative
            indices count from the end (default ``[-1]``, the last block).
        proxy_num_tokens (int, optional): prompts in a proxy block's set
            (default ``num_tokens``); must be >= ``num_proxies``.
        patch_loss (dict, optional): patch-to-prompt loss config (its
            ``loss_weight`` is beta); None switches it off.
        cls_loss (dict, optional): prompt-to-CLS loss config (``loss_weight``
            is lambda); None switches it off.
        block_reduction (str): ``'mean'`` (default, the reference) or
            ``'sum'`` of each loss over the proxy blocks.  With several proxy
            blocks the per-block values are logged as ``davpt_patch_b{i}`` /
            ``davpt_cls_b{i}`` (no ``loss`` in the name: not added again).
        plus (str, optional): DA-VPT+ preset, ``'paper'`` or
            ``'reference'`` (``PLUS_PRESETS``); None: DA-VPT.  Its lists are
            added to ``bias_tuning`` and ``host_tuning``.
        bias_tuning (list[str]): which parts of the attention's fused qkv
            bias get a learnable delta (e.g. ``['v']``).  Untuned parts add
            zeros that are not parameters.
        bias_blocks (list[int], optional): blocks whose bias deltas exist
            (default: all).
        host_tuning (list[str]): host parameters kept trainable, by logical
            name (``core/block_ops.py``: ``cls_token``, ``ln1``,
            ``ln2_bias``, ``attn_proj_bias``, ``ffn_fc1_bias``,
            ``ffn_fc2_bias``, ``patch_embed_bias``), in every block.
        dropout, init, attention: as ``Prompter``.
    """
    requires_cls_token = True
    cls_token_reason = 'compares the CLS query with its proxies'
    #: The task model hands labels / ground-truth maps to the backbone.
    needs_targets = True

    def __init__(self,
                 num_layers: int,
                 embed_dims: int,
                 num_heads: int,
                 patch_size: int,
                 num_classes: int,
                 num_tokens: int = 10,
                 num_proxies: int = 10,
                 proxy_blocks: Sequence[int] = (-1, ),
                 proxy_num_tokens: Optional[int] = None,
                 patch_loss: Optional[dict] = dict(
                     type='mmship.ProxyAnchorLoss', loss_weight=0.05),
                 cls_loss: Optional[dict] = dict(
                     type='mmship.ProxyAnchorLoss', loss_weight=0.05),
                 block_reduction: str = 'mean',
                 plus: Optional[str] = None,
                 bias_tuning: Sequence[str] = (),
                 bias_blocks: Optional[Sequence[int]] = None,
                 host_tuning: Sequence[str] = (),
                 dropout: float = 0.1,
                 init: str = 'vpt',
                 attention: dict = dict(decoupled=False),
                 init_cfg=None):
        super().__init__(num_layers, embed_dims, num_heads, patch_size,
                         placements=(), attention=attention, dropout=dropout,
                         init=init, init_cfg=init_cfg)
        if int(num_classes) < 1:
            raise ValueError(f'DA-VPT needs the number of classes of the task, '
                             f'got num_classes={num_classes}.')
        if int(num_proxies) < 1:
            raise ValueError(f'num_proxies must be >= 1, got {num_proxies}.')
        self.num_classes = int(num_classes)
        self.num_proxies = int(num_proxies)
        self.proxy_blocks = self._normalise_blocks(proxy_blocks,
                                                   'proxy_blocks')
        if not self.proxy_blocks:
            raise ValueError('DA-VPT needs at least one proxy block.')
        proxy_num_tokens = num_tokens if proxy_num_tokens is None \
            else int(proxy_num_tokens)
        if proxy_num_tokens < self.num_proxies:
            raise ValueError(
                f'num_proxies={self.num_proxies} proxies are asked of proxy '
                f'block(s) {self.proxy_blocks}, whose prompt set has only '
                f'{proxy_num_tokens} prompts: set proxy_num_tokens (or '
                f'num_tokens) >= num_proxies.')

        # VPT-deep: one fresh set per block, proxy blocks' sets sized apart.
        others = [b for b in range(num_layers) if b not in self.proxy_blocks]
        if others:
            self.add_placement('deep', num_tokens, name='deep', blocks=others,
                               dropout=dropout, init=init)
        self.add_placement('deep', proxy_num_tokens, name='deep',
                           blocks=self.proxy_blocks, dropout=dropout,
                           init=init)
        self._proxy_source = {b: f'deep_{b}' for b in self.proxy_blocks}

        self.patch_loss = MODELS.build(patch_loss) if patch_loss else None
        self.cls_loss = MODELS.build(cls_loss) if cls_loss else None
        if block_reduction not in BLOCK_REDUCTIONS:
            raise ValueError(f'block_reduction must be one of '
                             f'{BLOCK_REDUCTIONS}, got {block_reduction!r}.')
        self.block_reduction = block_reduction

        # DA-VPT+: a preset and / or explicit lists.
        if plus is not None and plus not in PLUS_PRESETS:
            raise ValueError(f'plus must be one of {sorted(PLUS_PRESETS)} or '
                             f'None, got {plus!r}.')
        self.plus = plus
        preset = PLUS_PRESETS.get(plus, dict(bias_tuning=(), host_tuning=()))
        host = [str(h) for h in preset['host_tuning']]
        host += [str(h) for h in host_tuning if str(h) not in host]
        self.host_parts = tuple(host)
        self.host_part_counts: Dict[str, int] = {}

        # Bias deltas (one (len(parts), D) parameter per block).
        parts = [str(p) for p in bias_tuning]
        parts += [p for p in preset['bias_tuning'] if p not in parts]
        bad = [p for p in parts if p not in QKV]
        if bad or len(set(parts)) != len(parts):
            raise ValueError(f"bias_tuning lists parts of the attention's qkv "
                             f"bias, each of 'q', 'k', 'v' at most once; got "
                             f"{list(bias_tuning)}.")
        self.bias_tuning = [p for p in QKV if p in parts]
        self.delta_targets = ('qkv.bias', ) if self.bias_tuning else ()
        if bias_blocks is not None and not self.bias_tuning:
            raise ValueError('bias_blocks is set but no qkv bias is tuned.')
        blocks = range(num_layers) if bias_blocks is None else \
            self._normalise_blocks(bias_blocks, 'bias_blocks')
        self.bias_deltas = nn.ParameterDict()
        if self.bias_tuning:
            for b in blocks:
                self.bias_deltas[str(b)] = nn.Parameter(
                    torch.zeros(len(self.bias_tuning), embed_dims))

        # Class -> proxy, saved with checkpoints; -1: not computed yet.
        mapping = torch.arange(self.num_classes) if \
            self.num_classes <= self.num_proxies else \
            torch.full((self.num_classes, ), -1, dtype=torch.long)
        self.register_buffer('class_to_proxy', mapping)
        self.register_buffer('proxy_centroids',
                             torch.zeros(self.num_proxies, embed_dims))
        # whether every class had a proxy when last checked: the check reads
        # the buffer on the host, so it runs once, not every step
        self._mapping_checked = False

    # -- set-up ------------------------------------------------------------------
    def _normalise_blocks(self, blocks: Sequence[int], what: str) -> List[int]:
        out = []
        for b in blocks:
            b = int(b)
            if not -self.num_layers <= b < self.num_layers:
                raise ValueError(
                    f'{what} names block {b}, which does not exist: the '
                    f'backbone has blocks 0..{self.num_layers - 1} (or '
                    f'-{self.num_layers}..-1 from the end).')
            b = b % self.num_layers
            if b in out:
                raise ValueError(f'{what} names block {b} twice.')
            out.append(b)
        return sorted(out)

    @property
    def mapping_ready(self) -> bool:
        return bool((self.class_to_proxy >= 0).all())

    @property
    def mapping_is_identity(self) -> bool:
        return self.num_classes <= self.num_proxies

    def set_mapping(self, mapping, centroids: Optional[Tensor] = None):
        """Install a class -> proxy mapping (and the clusters' centroids)."""
        mapping = torch.as_tensor(mapping, dtype=torch.long)
        if mapping.shape != (self.num_classes, ):
            raise ValueError(f'A class-to-prompt mapping needs one entry per '
                             f'class ({self.num_classes}), got '
                             f'{tuple(mapping.shape)}.')
        if mapping.min() < 0 or mapping.max() >= self.num_proxies:
            raise ValueError(f'Mapping entries must lie in 0..'
                             f'{self.num_proxies - 1}.')
        self.class_to_proxy.copy_(mapping.to(self.class_to_proxy.device))
        self._mapping_checked = False
        if centroids is not None:
            self.proxy_centroids.copy_(
                torch.as_tensor(centroids).to(self.proxy_centroids))

    def proxies(self, block: int) -> Tensor:
        """The M proxies of a proxy block: (M, D) learnable prompt tokens."""
        return self.sources[self._proxy_source[block]].tokens[
            0, :self.num_proxies]

    # -- the plan ------------------------------------------------------------------
    def records_cls_query(self, block: int, training: bool) -> bool:
        return training and self.cls_loss is not None and \
            block in self._proxy_source

    def block_deltas(self, block: int) -> Dict[str, Tensor]:
        if str(block) not in self.bias_deltas:
            return {}
        delta = self.bias_deltas[str(block)]
        pieces = []
        for part in QKV:
            if part in self.bias_tuning:
                pieces.append(delta[self.bias_tuning.index(part)])
            else:
                pieces.append(delta.new_zeros(self.embed_dims))
        return {'qkv.bias': torch.cat(pieces)}

    def after_block(self, block: int, ctx: PromptContext,
                    result: BlockResult):
        if not ctx.training or block not in self._proxy_source:
            return
        if self.patch_loss is None and self.cls_loss is None:
            return
        targets = self._check_targets(ctx)
        self._check_mapping()
        proxies = self.proxies(block)
        if self.patch_loss is not None:
            x, pos = self._patch_features(result.x_in[:, 1:], targets)
            self._add_loss(ctx, 'patch', block,
                           self.patch_loss(x, proxies, pos))
        if self.cls_loss is not None:
            self._add_loss(ctx, 'cls', block, self.cls_loss(
                result.cls_query, proxies, self._cls_positives(targets)))

    def _load_from_state_dict(self, *args, **kwargs):
        self._mapping_checked = False   # a checkpoint brings its own mapping
        super()._load_from_state_dict(*args, **kwargs)

    def _check_mapping(self):
        if self._mapping_checked:
            return
        if not self.mapping_ready:
            raise RuntimeError(
                f'DA-VPT has {self.num_classes} classes for {self.num_proxies} '
                f'proxies, and no class-to-prompt mapping was computed or '
                f'loaded: add dict(type="DAVPTMappingHook") to custom_hooks.')
        self._mapping_checked = True

    def _add_loss(self, ctx: PromptContext, kind: str, block: int,
                  loss: Tensor):
        """``loss_davpt_{kind}``: the mean (or sum) over the proxy blocks;
        each block's own value is logged apart when there are several."""
        n = len(self.proxy_blocks)
        key = f'loss_davpt_{kind}'
        share = loss / n if self.block_reduction == 'mean' else loss
        ctx.losses[key] = share if key not in ctx.losses else \
            ctx.losses[key] + share
        if n > 1:
            ctx.losses[f'davpt_{kind}_b{block}'] = loss.detach()

    # -- DA-VPT+ -------------------------------------------------------------------
    def host_frozen(self, host_part_counts: Dict[str, int]):
        self.host_part_counts = dict(host_part_counts)
        if self.plus is not None or self.bias_tuning or self.host_parts:
            from mmengine.logging import print_log
            counts = self.plus_param_counts()
            what = f"preset '{self.plus}'" if self.plus else 'explicit lists'
            print_log(
                f'DA-VPT+ ({what}): qkv bias deltas {self.bias_tuning} '
                f'{counts["bias_deltas"]} + host parts '
                f'{list(self.host_parts)} {counts["host"]} = '
                f'{counts["total"]} parameters beyond the prompts '
                f'({self.host_part_counts}).', logger='current')

    def plus_param_counts(self) -> Dict[str, int]:
        """Parameters DA-VPT+ trains beyond the prompts: the qkv bias
        deltas, the host parts (known once the backbone is built) and their
        sum."""
        deltas = sum(p.numel() for p in self.bias_deltas.parameters())
        host = sum(self.host_part_counts.values())
        return dict(bias_deltas=deltas, host=host, total=deltas + host)

    # -- targets --------------------------------------------------------------------
    def _check_targets(self, ctx: PromptContext) -> dict:
        targets = ctx.targets
        if targets is None or not ('labels' in targets
                                   or 'seg_maps' in targets):
            raise ValueError(
                'DA-VPT needs class labels (classification) or ground-truth '
                'maps (segmentation) in training; build the model with '
                'PromptedImageClassifier / PromptedEncoderDecoder.')
        num_classes = targets.get('num_classes', self.num_classes)
        if num_classes != self.num_classes:
            raise ValueError(f'The head has {num_classes} classes but the '
                             f'DA-VPT prompter was built for '
                             f'{self.num_classes} (prompt.num_classes).')
        if 'labels' in targets:
            labels = targets['labels']
            if labels.dim() != 1 or labels.shape[0] != ctx.batch_size:
                raise ValueError(
                    f'DA-VPT needs one class label per image, got labels of '
                    f'shape {tuple(labels.shape)} for {ctx.batch_size} images '
                    f'(multi-label data is not supported).')
        return targets

    def _patch_features(self, patches: Tensor, targets: dict):
        mapping = self.class_to_proxy
        if 'labels' in targets:
            x = patches.mean(dim=1)
            return x, labels_to_pos_mask(targets['labels'], mapping,
                                         self.num_proxies)
        x, _, classes = seg_class_features(
            patches, targets['seg_maps'], self.patch_size, self.num_classes,
            targets['ignore_index'])
        return x, labels_to_pos_mask(classes, mapping, self.num_proxies)

    def _cls_positives(self, targets: dict) -> Tensor:
        if 'labels' in targets:
            return labels_to_pos_mask(targets['labels'], self.class_to_proxy,
                                      self.num_proxies)
        return class_sets_to_pos_mask(targets['class_sets'],
                                      self.class_to_proxy, self.num_proxies)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, '
                f'num_proxies={self.num_proxies}, '
                f'proxy_blocks={self.proxy_blocks}, '
                f'block_reduction={self.block_reduction!r}, '
                f'plus={self.plus!r}, bias_tuning={self.bias_tuning}, '
                f'host_tuning={list(self.host_parts)}')


__all__ = ['DAVPTPrompter', 'PLUS_PRESETS']
