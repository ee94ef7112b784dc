# DA-VPT+: DA-VPT plus the attention key and value biases of every block.
_base_ = ['./davpt_dinov2-s14_cifar10-1k.py']
model = dict(backbone=dict(prompt=dict(bias_tuning=['k', 'v'])))
