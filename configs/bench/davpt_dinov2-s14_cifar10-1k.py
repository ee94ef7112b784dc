# DA-VPT on the CIFAR-10 1k benchmark: VPT-deep (10 prompts per block, as the
# VPT-deep baseline) whose last-block prompts are the Proxy-Anchor proxies of
# the 10 classes (C <= M: one proxy per class).
_base_ = ['./_base_cifar10-1k_dinov2-s14.py']
model = dict(backbone=dict(prompt=dict(
    type='DAVPTPrompter',
    num_classes=10,
    num_tokens=10,
    num_proxies=10,
    proxy_blocks=[-1],  # the reference's segmentation and most VTAB configs
    block_reduction='mean',
    # scale_ratio: the reference's r (its configs: 5); pos_normalization
    # 'all' is the reference's mean over all proxies (docs/davpt.md).
    patch_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32., delta=0.1,
                    scale_ratio=1.0, pos_normalization='all',
                    loss_weight=0.01),  # beta (VTAB default)
    cls_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32., delta=0.1,
                  scale_ratio=1.0, pos_normalization='all',
                  loss_weight=0.01),  # lambda
    bias_tuning=[],
    plus=None,  # DA-VPT+ presets: 'paper' (b_V) or 'reference'
    dropout=0.1)))
# C <= M: the mapping is the identity, class_mean_norm has no effect here.
custom_hooks = [dict(type='DAVPTMappingHook', images_per_class=10,
                     class_mean_norm='l2')]
