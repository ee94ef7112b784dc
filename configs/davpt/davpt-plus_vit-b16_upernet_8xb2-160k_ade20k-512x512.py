# DA-VPT+ on ADE20K with ViT-B/16 + UperNet: DA-VPT plus learnable deltas on
# the attention key and value biases of every block (METHODS.md 2.4; the
# query part stays fixed).  Extra parameters: 12 blocks x 2 x 768 = 18,432.
_base_ = ['./davpt_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(prompt=dict(bias_tuning=['k', 'v'])))
