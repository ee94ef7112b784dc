# DA-VPT+ with UperNet on CamVid (the biases of the linear-head DA-VPT+).
_base_ = ['./davpt_dinov2-s14_camvid-upernet.py']
model = dict(backbone=dict(prompt=dict(bias_tuning=['k', 'v'])))
