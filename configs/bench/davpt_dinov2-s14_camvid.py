# DA-VPT on the CamVid benchmark: VPT-deep (10 prompts per block, as the
# VPT-deep baseline); the last block's 10 prompts are proxies of the 11
# classes, clustered from mask-pooled class means before training.
_base_ = ['./_base_camvid_dinov2-s14.py',
          './_base_davpt_camvid_dinov2-s14.py']
model = dict(backbone=dict(prompt={{_base_.davpt_camvid_prompt}}))
custom_hooks = {{_base_.davpt_camvid_hooks}}
