"""An mmseg EncoderDecoder that adds the backbone's auxiliary losses and
hands the backbone the labels it asks for.  Without auxiliary losses it is
the stock EncoderDecoder."""
from typing import Dict, Optional

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS as SEG_MODELS
from torch import Tensor

from mmship.engine.params import log_param_table
from .utils import is_prompted, method_of


def seg_targets(data_samples, num_classes: int, ignore_index: int) -> dict:
    """Per-image ground-truth maps (B, H, W) and the image-level class sets
    (B, num_classes) bool, ignore index excluded."""
    seg_maps = torch.stack([s.gt_sem_seg.data.squeeze(0) for s in data_samples
                            ]).long()
    valid = seg_maps != ignore_index
    flat = torch.where(valid, seg_maps, num_classes).flatten(1)
    present = torch.zeros(flat.shape[0], num_classes + 1, dtype=torch.bool,
                          device=flat.device)
    present.scatter_(1, flat, True)
    return dict(seg_maps=seg_maps, class_sets=present[:, :num_classes],
                num_classes=num_classes, ignore_index=ignore_index)


@SEG_MODELS.register_module()
class PromptedEncoderDecoder(EncoderDecoder):

    def _backbone_targets(self, data_samples) -> Optional[dict]:
        method = method_of(self.backbone)
        if method is None or not method.needs_targets:
            return None
        return seg_targets(data_samples, self.decode_head.num_classes,
                           self.decode_head.ignore_index)

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        if not is_prompted(self.backbone):
            return super().loss(inputs, data_samples)
        feats, losses = self.backbone.forward_with_losses(
            inputs, self._backbone_targets(data_samples))
        if self.with_neck:
            feats = self.neck(feats)
        losses = dict(losses)
        losses.update(self._decode_head_forward_train(feats, data_samples))
        if self.with_auxiliary_head:
            losses.update(
                self._auxiliary_head_forward_train(feats, data_samples))
        return losses

    def init_weights(self):
        super().init_weights()
        log_param_table(self)
