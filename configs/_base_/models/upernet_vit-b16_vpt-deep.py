# mmseg's upernet_vit-b16_ln_mln.py (ViT-B/16 + MultiLevelNeck + UperNet +
# FCN auxiliary head) with the backbone frozen and VPT-deep prompts trained.
# Differences from the stock file, all deliberate:
#  * PromptedEncoderDecoder / PromptedSegViT (same arguments and weights);
#  * the backbone's weights come from a timm checkpoint, loaded and checked
#    key by key by mmship (`init_cfg`), instead of mmseg's offline conversion;
#    give a local file instead with
#    --cfg-options model.backbone.init_cfg.checkpoint=/path/to/vit.pth
#  * inputs are normalised the way the checkpoint was trained (timm's
#    augreg/orig in21k ViTs: mean = std = 0.5); with a frozen backbone this
#    matters more than with full fine-tuning;
#  * fast_head=True: neck and heads train channels_last and compiled, losses
#    included (same math; docs/performance.md).  The first iteration
#    compiles (a minute or two); --cfg-options model.fast_head=False gives
#    mmseg's eager path.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='PromptedEncoderDecoder',
    fast_head=True,
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='PromptedSegViT',
        prompt=dict(
            type='Prompter',
            placements=[dict(kind='deep', num_tokens=10)],
            dropout=0.1),
        freeze_backbone=True,
        img_size=(512, 512),
        patch_size=16,
        patch_bias=True,  # timm ViTs have a patch-embedding bias
        in_channels=3,
        embed_dims=768,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4,
        out_indices=(2, 5, 8, 11),
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        with_cls_token=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        act_cfg=dict(type='GELU'),
        norm_eval=False,
        interpolate_mode='bicubic',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='timm:vit_base_patch16_224.augreg_in21k')),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[768, 768, 768, 768],
        out_channels=768,
        scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=3,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
