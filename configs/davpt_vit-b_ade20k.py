# Short alias of configs/davpt/davpt_vit-b16_upernet_8xb2-160k_ade20k-512x512.py
_base_ = ['./davpt/davpt_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']
