# SHIP ablation, row 5 (SIP + DA + SSP + AP + prompt matching loss): the full
# method, identical to ../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py.
_base_ = ['../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(prompt=dict(
    sip=True, decoupled=True, ssp=True, ap=True, pml=True)))
