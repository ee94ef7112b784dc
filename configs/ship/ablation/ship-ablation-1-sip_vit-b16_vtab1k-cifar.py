# SHIP ablation, row 1 (SIP): one prompt set per group of the semantic
# hierarchy, VPT's coupled attention, nothing else.  Same task, schedule and
# hierarchy search as the full method (../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py).
_base_ = ['../ship_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(prompt=dict(
    sip=True, decoupled=False, ssp=False, ap=False, prototypes=None,
    pml=False)))
