_base_ = ['./ship/ship_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']
