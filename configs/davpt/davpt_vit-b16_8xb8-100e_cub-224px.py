# DA-VPT on CUB-200-2011 (FGVC): frozen ViT-B/16 (timm in21k), 10 prompts per
# block, the last block's 10 prompts are the proxies of the 200 classes
# (cosine k-means of the frozen model's class means, 10 images per class,
# computed by DAVPTMappingHook before training), Proxy-Anchor losses with
# beta = lambda = 0.05 (the reference FGVC setting), linear head on CLS.
# Schedule: the VPT/SHIP classification reference (AdamW 1e-3, wd 1e-4,
# 100 epochs, batch 8 x 8).  Paper FGVC mean: 91.22 (DA-VPT).
_base_ = [
    '../_base_/models/vit-b16_vpt-deep_cls.py',
    './_base_/cub_224px.py',
    '../_base_/schedules/schedule_cls_100e.py',
    '../_base_/default_runtime_cls.py',
]
num_classes = 200
model = dict(
    backbone=dict(
        prompt=dict(
            _delete_=True,
            type='DAVPTPrompter',
            num_classes=num_classes,
            num_tokens=10,
            num_proxies=10,
            proxy_blocks=[-1],
            patch_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32.,
                            delta=0.1, loss_weight=0.05),  # beta
            cls_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32.,
                          delta=0.1, loss_weight=0.05),  # lambda
            bias_tuning=[],  # DA-VPT+: plus='paper' or 'reference'
            dropout=0.1)),
    head=dict(num_classes=num_classes))

custom_hooks = [
    dict(
        type='DAVPTMappingHook',
        images_per_class=10,
        pipeline={{_base_.test_pipeline}},  # deterministic crops
        # e.g. recluster_from=10 (epochs) to refresh the mapping each epoch
        recluster_from=None,
        by_epoch=True),
]
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
