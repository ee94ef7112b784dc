# VPT-deep image classification: frozen ViT-B/16 (timm in21k weights), 10
# prompts per block, linear head on the CLS token; CIFAR-100 at 224 px with
# the VPT/SHIP reference schedule (AdamW 1e-3, 100 epochs, batch 8 x 8).
_base_ = [
    '../_base_/models/vit-b16_vpt-deep_cls.py',
    '../_base_/datasets/cifar100_224px.py',
    '../_base_/schedules/schedule_cls_100e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(head=dict(num_classes=100))
