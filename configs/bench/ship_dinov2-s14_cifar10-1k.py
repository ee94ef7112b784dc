# SHIP on the CIFAR-10 1k benchmark (./_base_cifar10-1k_dinov2-s14.py:
# frozen DINOv2-layout ViT-S/14, 224 px, train800 -> val200, the schedule and
# budget every method of the benchmark shares).
# One command: tools/train.py computes the hierarchy and the prototypes at
# the start (frozen features of the training images, `ship_offline` below),
# saves them in <work_dir>/ship_offline/ and reuses them on --resume.
# Ablations: --cfg-options ship_offline.num_groups=G (the threshold that
# yields G groups), model.backbone.prompt.prompt_update=bypass.
_base_ = ['./_base_cifar10-1k_dinov2-s14.py', './_base_ship_dinov2-s14.py']

ship_offline = dict(descriptor='cls', threshold=0.95, num_groups=None,
                    num_images=1000, k=200, prototype_descriptor='cls',
                    pipeline='test')
model = dict(backbone=dict(prompt={{_base_.ship_prompt}}))
