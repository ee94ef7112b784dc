# DA-VPT+ on ADE20K with ViT-B/16 + UperNet, the paper's preset: DA-VPT plus
# a learnable value-bias delta in every block (docs/davpt.md "DA-VPT+"; b_K
# is left out, softmax ignores it).  Extra parameters: 12 blocks x 768 = 9,216.
_base_ = ['./davpt_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(prompt=dict(plus='paper')))
