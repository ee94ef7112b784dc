# DA-VPT on a VTAB-1k task (default: CIFAR-100, data/vtab-1k/cifar): frozen
# ViT-B/16 (timm in21k), 10 prompts per block, the last block's 10 prompts
# are the proxies (100 classes clustered onto them), Proxy-Anchor losses with
# beta = lambda = 0.01 (the reference VTAB setting).  AdamW 1e-3, wd 1e-4,
# 100 epochs, batch 64 on one GPU.  Paper VTAB-1k mean: 74.69.
# Another task: --cfg-options for data_root (train/val/test dataloaders),
# num_classes of model.head, model.backbone.prompt and data_preprocessor.
_base_ = [
    '../_base_/models/vit-b16_vpt-deep_cls.py',
    '../_base_/datasets/vtab1k_224px.py',
    '../_base_/schedules/schedule_cls_100e.py',
    '../_base_/default_runtime_cls.py',
]
num_classes = 100
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
                            delta=0.1, loss_weight=0.01),  # beta
            cls_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32.,
                          delta=0.1, loss_weight=0.01),  # lambda
            bias_tuning=[],  # DA-VPT+: plus='paper' or 'reference'
            dropout=0.1)),
    head=dict(num_classes=num_classes))
auto_scale_lr = dict(base_batch_size=64)

custom_hooks = [
    dict(type='DAVPTMappingHook', images_per_class=10,
         pipeline={{_base_.test_pipeline}}, recluster_from=None,
         by_epoch=True),
]
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
