# DA-VPT in the paper's segmentation setting (docs/davpt.md, "Reference
# settings and results"): ViT-L/16 (ImageNet-21k) + SETR-PUP with
# auxiliary heads on blocks 9, 14 and 19,
# ADE20K 512 x 512, 160k iterations, batch 16 (2 x 8 GPUs), SGD momentum 0.9,
# lr 1e-3, weight decay 0, heads at lr x10, poly decay (power 0.9); single-
# scale sliding-window test.  The backbone is frozen; prompts (10 per block,
# the last block's 10 are the proxies) and heads train.  Paper: DA-VPT 45.10
# mIoU, VPT 44.08.
#
# Built on mmseg's setr_vit-l_pup_8xb2-160k_ade20k-512x512.py; what differs:
# the prompted model/backbone types, weights from timm (checked key by key by
# mmship; another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/vit-l.pth)
# and the input normalisation of those weights (mean = std = 0.5); heads
# trained channels_last and compiled (fast_head: same math;
# docs/performance.md; model.fast_head=False gives mmseg's eager path).
_base_ = ['mmseg::setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)

num_classes = 150
model = dict(
    type='PromptedEncoderDecoder',
    fast_head=True,
    data_preprocessor=dict(
        mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    pretrained=None,
    backbone=dict(
        type='PromptedSegViT',
        patch_bias=True,  # timm ViTs have a patch-embedding bias
        freeze_backbone=True,
        prompt=dict(
            type='DAVPTPrompter',
            num_classes=num_classes,
            num_tokens=10,
            num_proxies=10,
            proxy_blocks=[-1],
            patch_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32.,
                            delta=0.1, loss_weight=0.05),  # beta
            cls_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32.,
                          delta=0.1, loss_weight=0.05),  # lambda
            bias_tuning=[],
            dropout=0.1),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='timm:vit_large_patch16_224.augreg_in21k')))

# SETR's optimiser as in the base (SGD, momentum 0.9, lr 1e-3, wd 0, 'head'
# parameters x10); prompts learn at the base lr.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=0.0),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=160000,
         by_epoch=False)
]
train_dataloader = dict(batch_size=2)

custom_hooks = [
    dict(type='DAVPTMappingHook', images_per_class=10, max_images=2000,
         recluster_from=None, by_epoch=False),
]
