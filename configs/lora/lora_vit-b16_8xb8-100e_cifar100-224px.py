# LoRA image classification: frozen ViT-B/16, rank-8 deltas of q and v in
# every block, linear head on the CLS token; CIFAR-100 at 224 px with the
# VPT recipe.
_base_ = ['../vpt/vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py']
model = dict(backbone=dict(prompt=dict(
    _delete_=True, type='LoRA', rank=8, alpha=16.0, targets=['q', 'v'])))
