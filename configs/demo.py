_base_ = ['./demo/vpt-deep_vit-tiny_upernet_300it_demo-shapes-64x64.py']
