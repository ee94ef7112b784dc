"""mmseg's VisionTransformer with prompts: same arguments, same checkpoint
keys, same multi-level NCHW outputs; prompts never leave the blocks."""
from typing import Iterable, Optional

import torch
from mmseg.models.backbones import VisionTransformer as SegVisionTransformer
from mmseg.registry import MODELS as SEG_MODELS

from mmship.core.block_ops import SegBlockOps
from mmship.core.backbone import PromptedBackboneMixin
from mmship.registry import MODELS
from .utils import check_patch_multiple


@SEG_MODELS.register_module()
@MODELS.register_module()
class PromptedSegViT(PromptedBackboneMixin, SegVisionTransformer):
    """``mmseg.VisionTransformer`` + a tuning method.

    Args:
        prompt (dict, optional): the tuning method's config (``METHODS``),
            e.g. ``dict(type='Prompter', placements=[dict(kind='deep',
            num_tokens=50)])`` or ``dict(type='LoRA', rank=8)``.  None: no
            method (linear/head-only, or full fine-tuning with
            ``freeze_backbone=False``).
        freeze_backbone (bool): freeze every host parameter.
        trainable (list[str]): host parameter name patterns (fnmatch) that
            still train when frozen, e.g. ``['ln1.*']``.
        compile_blocks (bool): run every block through ``torch.compile``
            (one graph per block structure; docs/engine.md).
        cuda_graph (bool): capture the training forward and backward as
            CUDA graphs and replay them (for steps bound by kernel
            launches; ``mmship/core/graphs.py``, docs/engine.md).
        **kwargs: ``mmseg.models.backbones.VisionTransformer`` arguments.
    """
    host_format = 'mmseg'

    def __init__(self, prompt: Optional[dict] = None,
                 freeze_backbone: bool = True,
                 trainable: Iterable[str] = (), compile_blocks: bool = False,
                 cuda_graph: bool = False, **kwargs):
        super().__init__(**kwargs)
        check_patch_multiple(self.img_size, self.patch_size)
        self._init_prompting(prompt, freeze_backbone, trainable, SegBlockOps,
                             num_heads=self.layers[0].attn.attn.num_heads,
                             patch_size=self.patch_size,
                             embed_dims=self.pos_embed.shape[-1],
                             compile_blocks=compile_blocks,
                             cuda_graph=cuda_graph)

    @property
    def pos_grid(self):
        return (self.img_size[0] // self.patch_size,
                self.img_size[1] // self.patch_size)

    @property
    def num_extra_tokens(self) -> int:
        return int(self.with_cls_token)

    @property
    def gradient_checkpointing(self) -> bool:
        return self.layers[0].with_cp

    def _embed(self, inputs):
        B = inputs.shape[0]
        x, hw_shape = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        return x, hw_shape

    def _origin_outputs(self, x, hw_shape):
        return [self._format(x, hw_shape)] if self.out_origin else []

    def _final_norm(self, x):
        return self.norm1(x) if self.final_norm else x

    def _format(self, x, hw_shape):
        out = x[:, 1:] if self.with_cls_token else x
        B, _, C = out.shape
        out = out.reshape(B, hw_shape[0], hw_shape[1], C).permute(0, 3, 1, 2) \
            .contiguous()
        return [out, x[:, 0]] if self.output_cls_token else out
