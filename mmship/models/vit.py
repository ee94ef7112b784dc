"""mmpretrain's VisionTransformer with prompts: every arch it has (ViT, DeiT,
DINOv2 with layer scale and patch 14, ...), its ``out_type`` semantics, and
registered into mmseg's MODELS too so that ``out_type='featmap'`` drives a
segmentation decoder."""
from typing import Iterable, Optional

import torch
from mmpretrain.models.backbones import VisionTransformer as PretrainViT
from mmpretrain.models.utils import resize_pos_embed

from mmship.core.block_ops import PretrainBlockOps
from mmship.core.backbone import PromptedBackboneMixin
from mmship.registry import register_both
from .utils import check_patch_multiple


@register_both
class PromptedViT(PromptedBackboneMixin, PretrainViT):
    """``mmpretrain.VisionTransformer`` + a tuning method.

    Args:
        prompt (dict, optional): the tuning method's config (see
            ``PromptedSegViT``).
        freeze_backbone (bool): freeze every host parameter.
        trainable (list[str]): host parameter name patterns (fnmatch) that
            still train when frozen.
        compile_blocks (bool): run every block through ``torch.compile``
            (one graph per block structure; docs/engine.md).
        cuda_graph (bool): capture the training forward and backward as
            CUDA graphs and replay them (for steps bound by kernel
            launches; ``mmship/core/graphs.py``, docs/engine.md).
        **kwargs: ``mmpretrain.models.VisionTransformer`` arguments.
    """
    host_format = 'mmpretrain'

    def __init__(self, prompt: Optional[dict] = None,
                 freeze_backbone: bool = True,
                 trainable: Iterable[str] = (), compile_blocks: bool = False,
                 cuda_graph: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = self.patch_embed.projection.kernel_size[0]
        check_patch_multiple(self.img_size,
                             self.patch_embed.projection.kernel_size)
        self._init_prompting(prompt, freeze_backbone, trainable,
                             PretrainBlockOps,
                             num_heads=self.arch_settings['num_heads'],
                             patch_size=self.patch_size,
                             embed_dims=self.embed_dims,
                             compile_blocks=compile_blocks,
                             cuda_graph=cuda_graph)

    @property
    def pos_grid(self):
        return tuple(self.patch_resolution)

    def _embed(self, inputs):
        B = inputs.shape[0]
        x, patch_resolution = self.patch_embed(inputs)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed, self.patch_resolution, patch_resolution,
            mode=self.interpolate_mode, num_extra_tokens=self.num_extra_tokens)
        return self.pre_norm(self.drop_after_pos(x)), patch_resolution

    def _final_norm(self, x):
        return self.ln1(x) if self.final_norm else x

    def _format(self, x, patch_resolution):
        return self._format_output(x, patch_resolution)
