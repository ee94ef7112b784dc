# UperNet on the frozen backbone, no prompts: the baseline every prompt
# method of this table adds to.
_base_ = ['./_base_camvid-upernet_dinov2-s14.py']
