# SHIP with UperNet on CamVid: the prompts and offline settings of the
# linear-head SHIP config (same frozen backbone and data, so the same
# hierarchy and prototypes), the UperNet decoder and schedule of this table.
# tools/train.py computes the hierarchy and prototypes at the start.
_base_ = ['./_base_camvid-upernet_dinov2-s14.py']

ship_offline = dict(descriptor='mean_patch', threshold=0.95, num_groups=None,
                    num_images=367, k=200, prototype_descriptor='patch',
                    pipeline='test')
model = dict(backbone=dict(prompt=dict(
    type='SHIPPrompter',
    starts=None,  # searched at the start of training
    num_tokens=50,
    ssp_tokens=10,
    ap_groups=2,
    ap_tokens=10,
    lambda_a=0.1,
    tau=0.3,
    prototypes=None,  # computed at the start of training
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    prompt_update='attend',
    lambda_d=0.3,  # chosen on val (0.1: 69.5, 0.3: 72.0, 0.5: 67.0)
    dropout=0.1)))
