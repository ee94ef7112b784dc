# DA-VPT+ in the paper's segmentation setting, the paper's preset: DA-VPT
# plus a learnable value-bias delta in all 24 blocks (24 x 1024 = 24,576
# parameters; b_K is left out, softmax ignores it).
# Paper: 46.47 mIoU.
_base_ = ['./davpt_vit-l16_setr-pup_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(prompt=dict(plus='paper')))
