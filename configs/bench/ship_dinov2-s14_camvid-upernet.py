# SHIP with UperNet on CamVid: the prompts and offline settings of the
# linear-head SHIP config (same frozen backbone and data, so the same
# hierarchy and prototypes), the UperNet decoder and schedule of this table.
# tools/train.py computes the hierarchy and prototypes at the start.
_base_ = ['./_base_camvid-upernet_dinov2-s14.py',
          './_base_ship_dinov2-s14.py']

ship_offline = dict(descriptor='mean_patch', threshold=0.95, num_groups=None,
                    num_images=367, k=200, prototype_descriptor='patch',
                    pipeline='test')
model = dict(backbone=dict(prompt={{_base_.ship_prompt}}))
