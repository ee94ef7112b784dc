# Head-only: frozen backbone, no prompts, the same UperNet as the prompt
# methods.
_base_ = ['./_base_camvid_dinov2-s14_upernet.py']
