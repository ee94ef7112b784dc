# Linear / head-only baseline: frozen backbone, no prompts.
_base_ = ['./_base_cifar10-1k_dinov2-s14.py']
