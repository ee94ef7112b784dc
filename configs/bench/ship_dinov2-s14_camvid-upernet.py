# SHIP with UperNet on CamVid: the prompts, hierarchy and prototypes of the
# linear-head SHIP config (same frozen backbone, same data, so the same
# offline files), the UperNet decoder and schedule of this table.
_base_ = ['./_base_camvid-upernet_dinov2-s14.py']

ship_dir = 'work_dirs/ship_offline/dinov2-s14_camvid'
ship_offline = dict(descriptor='mean_patch', threshold=0.95, num_images=367,
                    k=200, prototype_descriptor='patch', pipeline='test')
model = dict(backbone=dict(prompt=dict(
    type='SHIPPrompter',
    starts=ship_dir + '/hierarchy.json',
    num_tokens=50,
    ssp_tokens=10,
    ap_groups=2,
    ap_tokens=10,
    lambda_a=0.1,
    tau=0.3,
    prototypes=ship_dir + '/prototypes_k200.pth',
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    lambda_d=0.3,  # chosen on val (0.1: 69.5, 0.3: 72.0, 0.5: 67.0)
    dropout=0.1)))
