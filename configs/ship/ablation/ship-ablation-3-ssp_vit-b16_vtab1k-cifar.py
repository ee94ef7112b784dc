# SHIP ablation, row 3 (SIP + DA + semantic-shared prompts).
_base_ = ['../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(prompt=dict(
    sip=True, decoupled=True, ssp=True, ap=False, prototypes=None,
    pml=False)))
