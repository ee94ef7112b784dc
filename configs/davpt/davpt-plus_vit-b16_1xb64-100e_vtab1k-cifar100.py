# DA-VPT+ on a VTAB-1k task: DA-VPT plus learnable key/value bias deltas in
# every block (12 x 2 x 768 = 18,432 parameters).  Paper VTAB-1k mean: 76.14.
_base_ = ['./davpt_vit-b16_1xb64-100e_vtab1k-cifar100.py']
model = dict(backbone=dict(prompt=dict(bias_tuning=['k', 'v'])))
