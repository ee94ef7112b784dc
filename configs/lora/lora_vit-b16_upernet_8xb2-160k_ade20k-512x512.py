# LoRA on ADE20K: the VPT-deep recipe (frozen ViT-B/16 + MultiLevelNeck +
# UperNet, 512 x 512, 160k iterations, batch 2 x 8 GPUs) with rank-8 deltas
# of the attention's q and v projections in every block instead of prompts.
_base_ = ['../vpt/vpt-deep_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(prompt=dict(
    _delete_=True, type='LoRA', rank=8, alpha=16.0, targets=['q', 'v'])))
