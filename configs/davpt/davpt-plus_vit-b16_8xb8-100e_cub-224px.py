# DA-VPT+ on CUB-200-2011: DA-VPT plus learnable key/value bias deltas in
# every block (12 x 2 x 768 = 18,432 parameters).  Paper FGVC mean: 91.94.
_base_ = ['./davpt_vit-b16_8xb8-100e_cub-224px.py']
model = dict(backbone=dict(prompt=dict(bias_tuning=['k', 'v'])))
