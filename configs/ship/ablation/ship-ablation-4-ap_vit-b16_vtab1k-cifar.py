# SHIP ablation, row 4 (SIP + DA + SSP + attribute prompts in the last 2
# groups; the prototypes are computed at the start of training, like the
# full config's).
_base_ = ['../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(prompt=dict(
    sip=True, decoupled=True, ssp=True, ap=True, pml=False)))
