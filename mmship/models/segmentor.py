"""An mmseg EncoderDecoder that adds the backbone's auxiliary losses, hands
the backbone the labels it asks for and, with ``fast_head``, trains the neck
and heads channels_last and compiled.  Without auxiliary losses and with
``fast_head=False`` it is the stock EncoderDecoder."""
from typing import Callable, Dict, Optional, Union

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.utils import add_prefix
from torch import Tensor, nn

from mmship.engine.params import log_param_table
from .resize import MatmulBilinearResize
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


def head_loss(head: BaseDecodeHead, feats, seg_label: Tensor) -> dict:
    """``BaseDecodeHead.loss`` (forward, then ``loss_by_feat``) on stacked
    labels (B, 1, H, W), with mmseg's accuracy as masked sums: the same
    numbers without its boolean indexing, whose data-dependent shapes would
    split the compiled graph."""
    seg_logits = resize(head.forward(feats), size=seg_label.shape[2:],
                        mode='bilinear', align_corners=head.align_corners)
    seg_label = seg_label.squeeze(1)
    losses = {}
    for loss_decode in (head.loss_decode if isinstance(
            head.loss_decode, nn.ModuleList) else [head.loss_decode]):
        value = loss_decode(seg_logits, seg_label, weight=None,
                            ignore_index=head.ignore_index)
        name = loss_decode.loss_name
        losses[name] = losses[name] + value if name in losses else value
    valid = seg_label != head.ignore_index
    correct = (seg_logits.argmax(1) == seg_label) & valid
    eps = torch.finfo(torch.float32).eps
    losses['acc_seg'] = ((correct.sum().float() + eps) * 100.0 /
                         (valid.sum() + eps)).reshape(1)
    return losses


def fast_head_losses(model: EncoderDecoder, feats, seg_label: Tensor) -> dict:
    """Neck, decode and auxiliary heads with their losses, as in
    ``EncoderDecoder.loss`` after the backbone, on channels_last inputs (the
    layout of the channels_last weights: no convolution converts them),
    with their bilinear resizes as matrix products
    (:class:`~mmship.models.resize.MatmulBilinearResize`)."""
    feats = [f.contiguous(memory_format=torch.channels_last)
             if f.dim() == 4 else f for f in feats]
    with MatmulBilinearResize():
        if model.with_neck:
            feats = model.neck(feats)
        losses = add_prefix(head_loss(model.decode_head, feats, seg_label),
                            'decode')
        aux = getattr(model, 'auxiliary_head', None)
        if isinstance(aux, nn.ModuleList):
            for idx, head in enumerate(aux):
                losses.update(add_prefix(head_loss(head, feats, seg_label),
                                         f'aux_{idx}'))
        elif aux is not None:
            losses.update(add_prefix(head_loss(aux, feats, seg_label),
                                     'aux'))
    return losses


#: compiled :func:`fast_head_losses`, one per set of torch.compile options.
#: Held here, not on the model, so that models stay picklable and a deepcopy
#: cannot call its original's bound method.
_COMPILED: Dict[str, Callable] = {}


def _compiled(options: dict) -> Callable:
    key = repr(sorted(options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fast_head_losses, **options)
    return _COMPILED[key]


def _check_fast_head(head: nn.Module):
    """fast_head restates BaseDecodeHead's loss: refuse heads that change
    it or sample pixels."""
    heads = head if isinstance(head, nn.ModuleList) else [head]
    for h in heads:
        cls = type(h)
        if (cls.loss is not BaseDecodeHead.loss
                or cls.loss_by_feat is not BaseDecodeHead.loss_by_feat
                or h.sampler is not None):
            raise ValueError(
                f'fast_head: {cls.__name__} has its own loss or a pixel '
                'sampler; build it with fast_head=False')


@SEG_MODELS.register_module()
class PromptedEncoderDecoder(EncoderDecoder):
    """``mmseg.EncoderDecoder`` + the backbone's auxiliary losses.

    Args:
        fast_head (bool | dict): train the neck, decode head and auxiliary
            heads faster, same math.  Their weights and inputs are
            channels_last (the layout of cuDNN's fastest convolutions; the
            weights are converted at build and stay so through ``.to()``,
            ``init_weights`` and checkpoint loading) and their training
            step, losses included, runs under ``torch.compile`` (compiled
            at the first training step), so that the bilinear resize of the
            logits to the label size, the cross-entropy and the accuracy are
            fused instead of materialising full-resolution fp32 logits.
            Their bilinear resizes run as two matrix products
            (:class:`~mmship.models.resize.MatmulBilinearResize`; where
            the weights are exact in the compute dtype), whose backward
            is a GEMM, not F.interpolate's atomic-add scatter.  A
            dict gives torch.compile's arguments (default ``dynamic=False``:
            training shapes are fixed; a smaller last batch compiles once
            more).  False: mmseg's EncoderDecoder.  Inference is never
            compiled; state_dict keys do not change.
        **kwargs: ``mmseg.models.segmentors.EncoderDecoder`` arguments.
    """

    def __init__(self, *args, fast_head: Union[bool, dict] = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.compile_options = None
        if fast_head:
            self.compile_options = dict(dynamic=False)
            if isinstance(fast_head, dict):
                self.compile_options.update(fast_head)
            _check_fast_head(self.decode_head)
            if self.with_auxiliary_head:
                _check_fast_head(self.auxiliary_head)
            self._head_memory_format(torch.channels_last)

    def _head_memory_format(self, memory_format):
        for name in ('neck', 'decode_head', 'auxiliary_head'):
            if getattr(self, name, None) is not None:
                getattr(self, name).to(memory_format=memory_format)

    def _backbone_targets(self, data_samples) -> Optional[dict]:
        method = method_of(self.backbone)
        if method is None or not method.needs_targets:
            return None
        return seg_targets(data_samples, self.decode_head.num_classes,
                           self.decode_head.ignore_index)

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        if is_prompted(self.backbone):
            feats, losses = self.backbone.forward_with_losses(
                inputs, self._backbone_targets(data_samples))
            losses = dict(losses)
        else:
            feats, losses = self.backbone(inputs), {}
        if self.compile_options is not None:
            seg_label = self.decode_head._stack_batch_gt(data_samples)
            losses.update(_compiled(self.compile_options)(self, feats,
                                                          seg_label))
            return losses
        if self.with_neck:
            feats = self.neck(feats)
        losses.update(self._decode_head_forward_train(feats, data_samples))
        if self.with_auxiliary_head:
            losses.update(
                self._auxiliary_head_forward_train(feats, data_samples))
        return losses

    def init_weights(self):
        # the initialisers fill weights in memory order: with the weights
        # contiguous meanwhile, a seed gives mmseg's initial weights
        if self.compile_options is not None:
            self._head_memory_format(torch.contiguous_format)
        super().init_weights()
        if self.compile_options is not None:
            self._head_memory_format(torch.channels_last)
        log_param_table(self)
