# DA-VPT as its reference code's configs run it: loss scale ratio r = 5 and
# class means layer-normalised before k-means (the positive term averaged
# over all proxies and the last block as the proxy block are mmship's
# defaults already); see docs/davpt.md.
_base_ = ['./davpt_dinov2-s14_camvid-upernet.py']
model = dict(backbone=dict(prompt=dict(
    patch_loss=dict(scale_ratio=5.0), cls_loss=dict(scale_ratio=5.0))))
custom_hooks = [dict(type='DAVPTMappingHook', images_per_class=10,
                     class_mean_norm='layer', by_epoch=False)]
