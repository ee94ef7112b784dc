# DA-VPT as its reference code's configs run it: loss scale ratio r = 5 (the
# positive term averaged over all proxies and the last block as the proxy
# block are mmship's defaults already; with 10 classes for 10 proxies the
# mapping is the identity, so the class-mean normalisation does not apply).
# See docs/davpt.md.
_base_ = ['./davpt_dinov2-s14_cifar10-1k.py']
model = dict(backbone=dict(prompt=dict(
    patch_loss=dict(scale_ratio=5.0), cls_loss=dict(scale_ratio=5.0))))
