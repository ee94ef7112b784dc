# Linear probe (the bench README's anchor): frozen backbone, a 1x1 conv on the
# block-12 patch tokens, no prompts.
_base_ = ['./_base_camvid_dinov2-s14_upernet.py']
model = dict(
    backbone=dict(out_indices=(11, )),
    neck=None,
    decode_head=dict(_delete_=True, type='FCNHead', in_channels=384,
                     in_index=0, channels=384, num_convs=0, concat_input=False,
                     dropout_ratio=0.0, num_classes=11, norm_cfg=None,
                     align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss',
                                      use_sigmoid=False, loss_weight=1.0)))
