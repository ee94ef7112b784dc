# DA-VPT on the demo: the tiny frozen ViT + UperNet of
# ../demo/vpt-deep_vit-tiny_upernet_300it_demo-shapes-64x64.py (demo shapes
# set, python tools/make_demo_data.py; 300 CPU iterations) with DA-VPT's
# prompts.  Its 4 classes are clustered onto 2 proxies so that the
# class-to-prompt mapping is a real k-means, computed before training by
# DAVPTMappingHook, and re-clustered every 100 iterations from iteration 100
# on.  Add plus='paper' for DA-VPT+.
_base_ = ['../demo/vpt-deep_vit-tiny_upernet_300it_demo-shapes-64x64.py']
model = dict(
    backbone=dict(
        prompt=dict(
            _delete_=True,
            type='DAVPTPrompter',
            num_classes=4,
            num_tokens=10,
            num_proxies=2,
            proxy_blocks=[-1],
            patch_loss=dict(type='mmship.ProxyAnchorLoss', loss_weight=0.05),
            cls_loss=dict(type='mmship.ProxyAnchorLoss', loss_weight=0.05),
            bias_tuning=[],
            dropout=0.1)))
custom_hooks = [
    dict(type='DAVPTMappingHook', images_per_class=10, max_images=64,
         recluster_from=100, recluster_interval=100, by_epoch=False),
]
