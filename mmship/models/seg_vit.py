"""mmseg's VisionTransformer with prompts: same arguments, same checkpoint
keys, same multi-level NCHW outputs; prompts never leave the blocks."""
from typing import Iterable, Optional

import torch
from mmseg.models.backbones import VisionTransformer as SegVisionTransformer
from mmseg.registry import MODELS as SEG_MODELS

from mmship.core.block_ops import SegBlockOps
from mmship.core.engine import PromptedBackboneMixin
from mmship.registry import MODELS
from .utils import check_patch_multiple


@SEG_MODELS.register_module()
@MODELS.register_module()
class PromptedSegViT(PromptedBackboneMixin, SegVisionTransformer):
    """``mmseg.VisionTransformer`` + a prompter.

    Args:
        prompt (dict, optional): the prompter config, e.g.
            ``dict(type='Prompter', placements=[dict(kind='deep',
            num_tokens=50)])``.  None: no prompts (linear/head-only, or full
            fine-tuning with ``freeze_backbone=False``).
        freeze_backbone (bool): freeze every host parameter.
        trainable (list[str]): host parameter name patterns (fnmatch) that
            still train when frozen, e.g. ``['ln1.*']``.
        **kwargs: ``mmseg.models.backbones.VisionTransformer`` arguments.
    """
    host_format = 'mmseg'

    def __init__(self, prompt: Optional[dict] = None,
                 freeze_backbone: bool = True,
                 trainable: Iterable[str] = (), **kwargs):
        super().__init__(**kwargs)
        check_patch_multiple(self.img_size, self.patch_size)
        self._init_prompting(prompt, freeze_backbone, trainable, SegBlockOps,
                             num_heads=self.layers[0].attn.attn.num_heads,
                             patch_size=self.patch_size,
                             embed_dims=self.pos_embed.shape[-1])

    @property
    def pos_grid(self):
        return (self.img_size[0] // self.patch_size,
                self.img_size[1] // self.patch_size)

    num_extra_tokens = 1

    def _forward(self, inputs, ctx):
        B = inputs.shape[0]
        x, hw_shape = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)

        outs = []
        if self.out_origin:
            outs.append(self._format(x, hw_shape))
        last = len(self.layers) - 1

        def on_output(i, x):
            if i == last and self.final_norm:
                x = self.norm1(x)
            if i in self.out_indices:
                outs.append(self._format(x, hw_shape))
            return x

        self._run_blocks(x, ctx, on_output)
        return tuple(outs)

    def _format(self, x, hw_shape):
        out = x[:, 1:] if self.with_cls_token else x
        B, _, C = out.shape
        out = out.reshape(B, hw_shape[0], hw_shape[1], C).permute(0, 3, 1, 2) \
            .contiguous()
        return [out, x[:, 0]] if self.output_cls_token else out
