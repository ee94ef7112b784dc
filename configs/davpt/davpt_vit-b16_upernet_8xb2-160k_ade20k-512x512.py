# DA-VPT on ADE20K with ViT-B/16 + UperNet (512 x 512, 160k iterations,
# batch 2 x 8 GPUs): the VPT-deep config of the same setting
# (../vpt/vpt-deep_vit-b16_upernet_8xb2-160k_ade20k-512x512.py: frozen
# backbone initialised from timm:vit_base_patch16_224.augreg_in21k, AdamW,
# prompts at lr 1e-3) with DA-VPT's prompts: 10 per block, the last block's 10
# act as proxies of the 150 classes (class-to-prompt mapping by cosine k-means
# of class means, computed by DAVPTMappingHook before training) and two
# Proxy-Anchor losses, beta = lambda = 0.05 (docs/davpt.md, "Proxy-Anchor
# loss").
#
# Another checkpoint:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/vit.pth
# A precomputed mapping (tools/analysis/davpt_class_mapping.py):
#   --cfg-options custom_hooks.0.mapping_file=work_dirs/x/mapping.json
_base_ = ['../vpt/vpt-deep_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']

num_classes = 150
davpt_prompt = dict(
    _delete_=True,
    type='DAVPTPrompter',
    num_classes=num_classes,
    num_tokens=10,
    num_proxies=10,
    proxy_blocks=[-1],
    patch_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32., delta=0.1,
                    loss_weight=0.05),  # beta
    cls_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32., delta=0.1,
                  loss_weight=0.05),  # lambda
    bias_tuning=[],  # DA-VPT+: plus='paper' or 'reference'
    dropout=0.1)
model = dict(backbone=dict(prompt=davpt_prompt))

custom_hooks = [
    dict(
        type='DAVPTMappingHook',
        images_per_class=10,
        # ADE20K's rarest classes are in few images: read at most this many.
        max_images=2000,
        # Re-clustering with the current model, off by default; e.g.
        # recluster_from=16000, recluster_interval=16000, by_epoch=False.
        recluster_from=None,
        by_epoch=False),
]
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
