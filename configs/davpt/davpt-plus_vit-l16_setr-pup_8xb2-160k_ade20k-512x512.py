# DA-VPT+ in the paper's segmentation setting: DA-VPT plus learnable key and
# value bias deltas in all 24 blocks (24 x 2 x 1024 = 49,152 parameters).
# Paper: 46.47 mIoU.
_base_ = ['./davpt_vit-l16_setr-pup_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(prompt=dict(bias_tuning=['k', 'v'])))
