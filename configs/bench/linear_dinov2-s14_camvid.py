# Linear probe (the bench README's anchor, 54.9 mIoU): frozen backbone, no
# prompts.
_base_ = ['./_base_camvid_dinov2-s14.py']
