# DA-VPT+ (the paper's preset): DA-VPT plus a value-bias delta b_V in every
# block (b_K is left out: softmax ignores a bias added to every key).
_base_ = ['./davpt_dinov2-s14_camvid.py']
model = dict(backbone=dict(prompt=dict(plus='paper')))
