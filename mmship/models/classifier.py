"""An mmpretrain ImageClassifier that adds the backbone's auxiliary losses and
hands the backbone the labels it asks for.  Without auxiliary losses it is
the stock ImageClassifier."""
from typing import Dict

import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from torch import Tensor

from mmship.engine.params import log_param_table
from .utils import is_prompted, method_of


@PRETRAIN_MODELS.register_module()
class PromptedImageClassifier(ImageClassifier):

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        if not is_prompted(self.backbone):
            return super().loss(inputs, data_samples)
        prompter = method_of(self.backbone)
        targets = None
        if prompter is not None and prompter.needs_targets:
            if any('gt_label' not in s for s in data_samples):
                raise ValueError(f'{type(prompter).__name__} needs class '
                                 f'labels, and the data has none.')
            targets = dict(labels=torch.cat([s.gt_label for s in data_samples
                                             ]).to(inputs.device),
                           num_classes=self.head.num_classes)
        feats, losses = self.backbone.forward_with_losses(inputs, targets)
        if self.with_neck:
            feats = self.neck(feats)
        losses = dict(losses)
        losses.update(self.head.loss(feats, data_samples))
        return losses

    def init_weights(self):
        super().init_weights()
        log_param_table(self)
