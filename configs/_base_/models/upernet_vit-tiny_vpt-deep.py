# A tiny ViT (64 px, patch 8, 6 blocks of width 96) with VPT-deep prompts,
# MultiLevelNeck and a small UperNet: the demo model, trained in minutes on a
# CPU.  Same structure as upernet_vit-b16_vpt-deep.py, scaled down; BN, not
# SyncBN, so that it runs on CPUs (also under DDP with gloo).
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(64, 64))
model = dict(
    type='PromptedEncoderDecoder',
    # Off here, unlike the ViT-B configs: on a CPU, inductor's first compile
    # (about 50 s on 2 cores, cold cache) outweighs what it saves over 300
    # tiny iterations (the demo took 87 s with it, 53 s without).
    fast_head=False,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='PromptedSegViT',
        # VPT-deep: a fresh set of 10 prompts in every block.
        prompt=dict(
            type='Prompter',
            placements=[dict(kind='deep', num_tokens=10)],
            dropout=0.1),
        freeze_backbone=True,  # random init here: there is no tiny
        # pretrained ViT offline; prompts, neck and heads learn.
        img_size=(64, 64),
        patch_size=8,
        in_channels=3,
        embed_dims=96,
        num_layers=6,
        num_heads=3,
        mlp_ratio=4,
        out_indices=(1, 3, 5),
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        with_cls_token=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        act_cfg=dict(type='GELU'),
        norm_eval=False,
        interpolate_mode='bicubic',
        init_cfg=None),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[96, 96, 96],
        out_channels=96,
        scales=[2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead',
        in_channels=[96, 96, 96],
        in_index=[0, 1, 2],
        pool_scales=(1, 2, 3, 6),
        channels=64,
        dropout_ratio=0.1,
        num_classes=4,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=96,
        in_index=2,
        channels=32,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=4,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
