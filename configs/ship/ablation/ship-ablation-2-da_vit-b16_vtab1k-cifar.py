# SHIP ablation, row 2 (SIP + decoupled attention, lambda_d = 0.1).
_base_ = ['../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(prompt=dict(
    sip=True, decoupled=True, ssp=False, ap=False, prototypes=None,
    pml=False)))
