# DA-VPT+ (the paper's preset, b_V) with UperNet on CamVid.
_base_ = ['./davpt_dinov2-s14_camvid-upernet.py']
model = dict(backbone=dict(prompt=dict(plus='paper')))
