"""Checkpoint loading: timm / mmseg / mmpretrain layouts, strict key checks,
position-table resizing."""
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from mmship.models import PromptedSegViT, PromptedViT
from tiny import PRETRAIN_ARCH, deep


def timm_vit(img_size=32, patch_size=8, init_values=None, **kw):
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=img_size, patch_size=patch_size, embed_dim=32, depth=4,
        num_heads=2, mlp_ratio=2, num_classes=5, init_values=init_values,
        **kw).eval()
    for name, p in model.named_parameters():  # make every tensor count
        if 'gamma' in name or name.endswith('bias') or 'norm' in name:
            p.data.normal_(1.0 if 'gamma' in name else 0.0, 0.3)
    return model


# timm and the hosts sum in different orders (fused qkv, SDPA kernels), and
# random weights with large norms amplify that: a wrong mapping is O(1) off.
TIMM_TOL = dict(atol=5e-5, rtol=1e-4)


def save(model, path, fmt):
    state = model.state_dict()
    if fmt == 'safetensors':
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return str(path)


@pytest.mark.parametrize('fmt', ['pth', 'safetensors'])
def test_mmpretrain_host_matches_timm_features(tmp_path, fmt):
    ref = timm_vit()
    ckpt = save(ref, tmp_path / f'vit.{fmt}', fmt)
    vit = PromptedViT(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                      out_type='raw', init_cfg=dict(type='Pretrained',
                                                    checkpoint=ckpt)).eval()
    vit.init_weights()
    img = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(vit(img)[-1], ref.forward_features(img),
                               **TIMM_TOL)


def test_dinov2_layout_with_position_resize_matches_timm(tmp_path):
    # checkpoint at a 4x4 grid (56 px, patch 14), model at 6x6 (84 px)
    ref = timm_vit(img_size=56, patch_size=14, init_values=1e-5)
    ckpt = save(ref, tmp_path / 'dino.pth', 'pth')
    vit = PromptedViT(arch=PRETRAIN_ARCH, img_size=84, patch_size=14,
                      layer_scale_init_value=1e-5, out_type='raw',
                      init_cfg=dict(type='Pretrained', checkpoint=ckpt)).eval()
    vit.init_weights()
    big = timm_vit(img_size=84, patch_size=14, init_values=1e-5)
    state = ref.state_dict()
    state['pos_embed'] = resample_abs_pos_embed(
        state['pos_embed'], (6, 6), num_prefix_tokens=1, antialias=False)
    big.load_state_dict(state)
    img = torch.randn(1, 3, 84, 84)
    torch.testing.assert_close(vit(img)[-1], big.forward_features(img),
                               **TIMM_TOL)


def test_mmseg_host_matches_timm_patch_tokens(tmp_path):
    ref = timm_vit()
    ckpt = save(ref, tmp_path / 'vit.pth', 'pth')
    vit = PromptedSegViT(img_size=32, patch_size=8, embed_dims=32,
                         num_layers=4, num_heads=2, mlp_ratio=2,
                         out_indices=(3, ), final_norm=True, patch_bias=True,
                         init_cfg=dict(type='Pretrained',
                                       checkpoint=ckpt)).eval()
    vit.init_weights()
    img = torch.randn(2, 3, 32, 32)
    want = ref.forward_features(img)[:, 1:].transpose(1, 2).reshape(2, 32, 4,
                                                                    4)
    torch.testing.assert_close(vit(img)[0], want, **TIMM_TOL)


def test_openmmlab_layouts_round_trip(tmp_path):
    """A whole-model OpenMMLab checkpoint ('state_dict', 'backbone.' keys)
    loads into a fresh host, prompts excluded from the check."""
    kw = dict(arch=PRETRAIN_ARCH, img_size=32, patch_size=8)
    src = PromptedViT(**kw)
    src.init_weights()
    whole = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    whole['head.fc.weight'] = torch.zeros(3, 32)
    torch.save(dict(state_dict=whole, meta=dict()), tmp_path / 'm.pth')
    dst = PromptedViT(prompt=deep(), init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'm.pth')), **kw)
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_checkpoint_that_does_not_fit_lists_keys(tmp_path):
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        mlp_ratio=2)
    ckpt = save(ref, tmp_path / 'short.pth', 'pth')
    vit = PromptedViT(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                      init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    with pytest.raises(ValueError, match=r'missing in checkpoint \(24\): '
                       r'layers\.2\.'):
        vit.init_weights()


def test_layer_scale_checkpoint_into_host_without_it(tmp_path):
    ckpt = save(timm_vit(init_values=1e-5), tmp_path / 'ls.pth', 'pth')
    vit = PromptedSegViT(img_size=32, patch_size=8, embed_dims=32,
                         num_layers=4, num_heads=2, mlp_ratio=2,
                         patch_bias=True, final_norm=True,
                         init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    with pytest.raises(ValueError, match=r'unexpected in checkpoint.*'
                       r'blocks\.0\.ls1\.gamma'):
        vit.init_weights()


def test_unknown_layout_and_missing_file(tmp_path):
    torch.save({'foo.weight': torch.zeros(1)}, tmp_path / 'x.pth')
    vit = PromptedViT(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                      init_cfg=dict(type='Pretrained',
                                    checkpoint=str(tmp_path / 'x.pth')))
    with pytest.raises(ValueError, match='Unrecognised checkpoint layout'):
        vit.init_weights()
    vit.init_cfg['checkpoint'] = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        vit.init_weights()


def test_unreachable_timm_weights_give_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError('no network')

    monkeypatch.setattr(timm, 'create_model', offline)
    vit = PromptedViT(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                      init_cfg=dict(type='Pretrained',
                                    checkpoint='timm:vit_tiny_patch16_224'))
    with pytest.raises(RuntimeError, match='timm could not provide weights '
                       "for 'vit_tiny_patch16_224'.*file path"):
        vit.init_weights()


def write_jax_npz(model, path):
    """Write a timm ViT in the original JAX (augreg) .npz layout."""
    import numpy as np
    s = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    D = s['cls_token'].shape[-1]
    H = model.blocks[0].attn.num_heads
    w = {'embedding/kernel': s['patch_embed.proj.weight'].transpose(2, 3, 1, 0),
         'embedding/bias': s['patch_embed.proj.bias'], 'cls': s['cls_token'],
         'Transformer/posembed_input/pos_embedding': s['pos_embed'],
         'Transformer/encoder_norm/scale': s['norm.weight'],
         'Transformer/encoder_norm/bias': s['norm.bias']}
    for i in range(len(model.blocks)):
        b, p = f'blocks.{i}.', f'Transformer/encoderblock_{i}/'
        w[p + 'LayerNorm_0/scale'] = s[b + 'norm1.weight']
        w[p + 'LayerNorm_0/bias'] = s[b + 'norm1.bias']
        w[p + 'LayerNorm_2/scale'] = s[b + 'norm2.weight']
        w[p + 'LayerNorm_2/bias'] = s[b + 'norm2.bias']
        qkv_w = s[b + 'attn.qkv.weight'].reshape(3, D, D)
        qkv_b = s[b + 'attn.qkv.bias'].reshape(3, H, D // H)
        for j, name in enumerate(['query', 'key', 'value']):
            a = p + f'MultiHeadDotProductAttention_1/{name}/'
            w[a + 'kernel'] = qkv_w[j].T.reshape(D, H, D // H)
            w[a + 'bias'] = qkv_b[j]
        a = p + 'MultiHeadDotProductAttention_1/out/'
        w[a + 'kernel'] = s[b + 'attn.proj.weight'].T.reshape(H, D // H, D)
        w[a + 'bias'] = s[b + 'attn.proj.bias']
        for j, fc in enumerate(['fc1', 'fc2']):
            w[p + f'MlpBlock_3/Dense_{j}/kernel'] = s[b + f'mlp.{fc}.weight'].T
            w[p + f'MlpBlock_3/Dense_{j}/bias'] = s[b + f'mlp.{fc}.bias']
    np.savez(path, **w)
    return str(path)


def test_jax_npz_checkpoint_matches_source_model(tmp_path):
    ref = timm_vit()
    ckpt = write_jax_npz(ref, tmp_path / 'augreg.npz')
    vit = PromptedViT(arch=PRETRAIN_ARCH, img_size=32, patch_size=8,
                      out_type='raw', init_cfg=dict(type='Pretrained',
                                                    checkpoint=ckpt)).eval()
    vit.init_weights()
    img = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(vit(img)[-1], ref.forward_features(img),
                               **TIMM_TOL)
