# DA-VPT+ on CUB-200-2011, the paper's preset: DA-VPT plus a learnable
# value-bias delta in every block (12 x 768 = 9,216 parameters; b_K is left
# out, softmax ignores it).  plus='reference' for the reference code's set
# (56,064).  Paper FGVC mean: 91.94.
_base_ = ['./davpt_vit-b16_8xb8-100e_cub-224px.py']
model = dict(backbone=dict(prompt=dict(plus='paper')))
