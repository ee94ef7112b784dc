# DA-VPT with UperNet on CamVid: the prompts and losses of the linear-head
# DA-VPT config, the UperNet decoder and schedule of this table.
_base_ = ['./_base_camvid-upernet_dinov2-s14.py',
          './_base_davpt_camvid_dinov2-s14.py']
model = dict(backbone=dict(prompt={{_base_.davpt_camvid_prompt}}))
custom_hooks = {{_base_.davpt_camvid_hooks}}
