"""Tiny host ViTs shared by the tests, and a call counter."""
from mmpretrain.models.backbones import VisionTransformer as PretrainViT
from mmseg.models.backbones import VisionTransformer as SegViT

from mmship.models import PromptedSegViT, PromptedViT

SEG_ARGS = dict(img_size=32, patch_size=8, embed_dims=32, num_layers=4,
                num_heads=2, mlp_ratio=2, out_indices=(1, 3), final_norm=True)
PRETRAIN_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2,
                     feedforward_channels=64)
PRETRAIN_ARGS = dict(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                     out_indices=(1, 3))
DINO_ARGS = dict(arch=PRETRAIN_ARCH, img_size=28, patch_size=14,
                 layer_scale_init_value=1e-5, out_indices=(3, ))


TWIN_ONLY = ('freeze_backbone', 'trainable', 'compile_blocks', 'cuda_graph')


def _split(kw):
    twin = {k: kw.pop(k) for k in TWIN_ONLY if k in kw}
    return kw, twin


def seg_pair(prompt=None, **kw):
    """(stock mmseg ViT, prompted twin with the same weights)."""
    kw, twin_kw = _split(kw)
    args = {**SEG_ARGS, **kw}
    host = SegViT(**args)
    host.init_weights()
    twin = PromptedSegViT(prompt=prompt, **args, **twin_kw)
    twin.load_state_dict(host.state_dict(), strict=False)
    host.eval()  # mmseg's train() returns None
    twin.eval()
    return host, twin


def pretrain_pair(prompt=None, args=PRETRAIN_ARGS, **kw):
    kw, twin_kw = _split(kw)
    args = {**args, **kw}
    host = PretrainViT(**args)
    host.init_weights()
    # layer scale starts at 1e-5: randomise it so the blocks matter.
    for name, p in host.named_parameters():
        if 'gamma' in name:
            p.data.uniform_(0.5, 1.5)
    twin = PromptedViT(prompt=prompt, **args, **twin_kw)
    twin.load_state_dict(host.state_dict(), strict=False)
    host.eval()  # mmseg's train() returns None
    twin.eval()
    return host, twin


def deep(num_tokens=3, **kw):
    return dict(type='Prompter',
                placements=[dict(kind='deep', num_tokens=num_tokens)], **kw)


def count_calls(monkeypatch, module, name: str) -> list:
    """Wrap ``module.name`` for the test; the returned list gets one entry
    per call."""
    calls = []
    real = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls
