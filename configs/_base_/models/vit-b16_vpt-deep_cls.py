# mmpretrain ViT-B/16 classifier with the backbone frozen and VPT-deep
# prompts trained; the CLS token of the last block feeds a linear head.
# Weights: a timm checkpoint, loaded and checked key by key by mmship;
# give a local file with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/vit.pth
model = dict(
    type='PromptedImageClassifier',
    backbone=dict(
        type='PromptedViT',
        prompt=dict(
            type='Prompter',
            placements=[dict(kind='deep', num_tokens=10)],
            dropout=0.1),
        freeze_backbone=True,
        arch='b',
        img_size=224,
        patch_size=16,
        drop_rate=0.0,
        out_type='cls_token',
        final_norm=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='timm:vit_base_patch16_224.augreg_in21k')),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
