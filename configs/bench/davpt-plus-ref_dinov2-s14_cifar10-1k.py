# DA-VPT+ (the reference code's preset): DA-VPT plus, in every block, the
# value-bias delta, the attention projection, FFN fc2 and LN2 biases and LN1
# (weight and bias), and the CLS token; 73 x 384 = 28032 parameters on
# ViT-S/14 beyond the prompts (docs/davpt.md).
_base_ = ['./davpt_dinov2-s14_cifar10-1k.py']
model = dict(backbone=dict(prompt=dict(plus='reference')))
