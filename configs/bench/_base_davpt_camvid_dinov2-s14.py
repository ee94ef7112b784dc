# DA-VPT's prompts, losses and mapping hook on CamVid, shared by its
# linear-head and UperNet configs.
davpt_camvid_prompt = dict(
    type='DAVPTPrompter',
    num_classes=11,
    num_tokens=10,
    num_proxies=10,
    proxy_blocks=[-1],  # the reference's segmentation and most VTAB configs
    block_reduction='mean',
    # scale_ratio: the reference's r (its configs: 5); pos_normalization
    # 'all' is the reference's mean over all proxies (docs/davpt.md).
    patch_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32., delta=0.1,
                    scale_ratio=1.0, pos_normalization='all',
                    loss_weight=0.05),  # beta (segmentation default)
    cls_loss=dict(type='mmship.ProxyAnchorLoss', alpha=32., delta=0.1,
                  scale_ratio=1.0, pos_normalization='all',
                  loss_weight=0.05),  # lambda
    bias_tuning=[],
    plus=None,  # DA-VPT+ presets: 'paper' (b_V) or 'reference'
    dropout=0.1)
davpt_camvid_hooks = [dict(type='DAVPTMappingHook', images_per_class=10,
                           class_mean_norm='l2', by_epoch=False)]
