# DA-VPT+ on a VTAB-1k task, the paper's preset: DA-VPT plus a learnable
# value-bias delta in every block (12 x 768 = 9,216 parameters; b_K is left
# out, softmax ignores it).  plus='reference' for the reference code's set
# (56,064).  Paper VTAB-1k mean: 76.14.
_base_ = ['./davpt_vit-b16_1xb64-100e_vtab1k-cifar100.py']
model = dict(backbone=dict(prompt=dict(plus='paper')))
