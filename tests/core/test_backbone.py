"""The prompt engine against the hosts it wraps."""
import pytest
import torch

from mmship.core import PromptAttention
from tiny import DINO_ARGS, deep, pretrain_pair, seg_pair

ALL_PLACEMENTS = [
    dict(kind='shallow', num_tokens=2),
    dict(kind='deep', num_tokens=3),
    dict(kind='shared', num_tokens=2),
    dict(kind='group', num_tokens=2, starts=[0, 2]),
]


def _close(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('final_norm', [True, False])
def test_seg_host_without_prompts_equals_mmseg(final_norm):
    host, twin = seg_pair(final_norm=final_norm)
    img = torch.randn(2, 3, 32, 32)
    _close(host(img), twin(img))
    # other input sizes go through the host's position-table resize
    img = torch.randn(1, 3, 48, 40)
    _close(host(img), twin(img))


@pytest.mark.parametrize('out_type', ['featmap', 'cls_token', 'avg_featmap',
                                      'raw'])
def test_pretrain_host_without_prompts_equals_mmpretrain(out_type):
    host, twin = pretrain_pair(out_type=out_type)
    img = torch.randn(2, 3, 32, 32)
    _close(host(img), twin(img))


def test_dinov2_layout_without_prompts_equals_mmpretrain():
    host, twin = pretrain_pair(args=DINO_ARGS, out_type='featmap')
    img = torch.randn(2, 3, 56, 42)
    _close(host(img), twin(img))


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_decoupled_attention_at_zero_lambda_leaves_instances_untouched(pair):
    prompt = dict(type='Prompter', placements=ALL_PLACEMENTS,
                  attention=dict(decoupled=True, lambda_d=0.0))
    host, twin = pair(prompt=prompt)
    img = torch.randn(2, 3, 32, 32)
    _close(host(img), twin(img))
    # ... and at lambda_d > 0 the prompts do reach the instances
    twin.prompter.attention.lambda_d = 0.5
    assert not torch.allclose(host(img)[-1], twin(img)[-1], atol=1e-3)


def test_coupled_prompts_change_instance_outputs():
    host, twin = seg_pair(prompt=deep())
    img = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(host(img)[-1], twin(img)[-1], atol=1e-3)


@pytest.mark.parametrize('decoupled', [True, False])
@pytest.mark.parametrize('update', ['attend', 'bypass'])
def test_attention_matches_explicit_softmaxes(decoupled, update):
    """Instance rows: I2I and I2P mixed by lambda_d (decoupled; one token
    tensor or two streams) or one softmax over all keys (coupled); kept prompt
    rows: one softmax over all keys (attend) or their own normalised input
    (bypass).  Prompts 0..1 are kept, 2 only lends its keys and values."""
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    q_p, k_p, v_p = (torch.randn(2, 3, 3, 4) for _ in range(3))
    normed_p = torch.randn(2, 3, 12)
    lam = 0.3
    attention = PromptAttention(decoupled=decoupled, lambda_d=lam,
                                prompt_update=update)
    k_all, v_all = torch.cat([k, k_p], 2), torch.cat([v, v_p], 2)
    normed = torch.cat([torch.randn(2, 5, 12), normed_p], 1)
    both = attention.joint(torch.cat([q, q_p[:, :, :2]], 2), k_all, v_all, 5,
                           normed=normed)
    results = [(both[:, :, :5], both[:, :, 5:])]
    if decoupled:
        results.append(attention.streams(q, k, v, k_p, v_p, q_p[:, :, :2],
                                         normed_p=normed_p[:, :2]))

    def attend(q, k, v):
        return (q @ k.transpose(-2, -1) / 2.0).softmax(-1) @ v

    want_x = (1 - lam) * attend(q, k, v) + lam * attend(q, k_p, v_p) \
        if decoupled else attend(q, k_all, v_all)
    want_p = attend(q_p[:, :, :2], k_all, v_all) if update == 'attend' \
        else normed_p[:, :2].reshape(2, 2, 3, 4).transpose(1, 2)
    for out, out_p in results:
        torch.testing.assert_close(out, want_x)
        torch.testing.assert_close(out_p, want_p)
    if decoupled:  # lent prompts only: no prompt rows come back
        assert attention.streams(q, k, v, k_p, v_p)[1] is None


def test_coupled_attention_refuses_two_streams():
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(RuntimeError, match='one token tensor'):
        PromptAttention(decoupled=False).streams(q, q, q, q, q)


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_gradients_reach_prompts_only(pair):
    _, twin = pair(prompt=dict(type='Prompter', placements=ALL_PLACEMENTS))
    twin.train()
    out = twin(torch.randn(2, 3, 32, 32))
    sum(o.float().pow(2).mean() for o in out).backward()
    for name, p in twin.named_parameters():
        if name.startswith('prompter.'):
            assert p.requires_grad and p.grad is not None \
                and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


def test_trainable_patterns_and_frozen_eval_mode():
    _, twin = seg_pair(prompt=deep(), trainable=['ln1.*'], drop_rate=0.1)
    twin.train()
    trainable = {n for n, p in twin.named_parameters() if p.requires_grad}
    assert {'ln1.weight', 'ln1.bias'} <= trainable
    assert all(n.startswith(('prompter.', 'ln1.')) for n in trainable)
    assert not twin.layers.training and not twin.patch_embed.training
    assert not twin.drop_after_pos.training
    assert twin.prompter.training and twin.ln1.training
    # frozen blocks in eval mode: dropout inactive, so outputs repeat
    twin.prompter.eval()
    img = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(twin(img), twin(img))


def test_full_finetuning_trains_everything():
    _, twin = seg_pair(freeze_backbone=False)
    assert all(p.requires_grad for p in twin.parameters())


def test_schedule_of_each_placement():
    _, twin = seg_pair(prompt=dict(type='Prompter',
                                   placements=ALL_PLACEMENTS))
    steps = [[type(s).__name__ + ':' + s.source for s in block]
             for block in twin.prompter.schedule]
    assert steps[0] == ['Insert:shallow', 'Insert:deep_0', 'Insert:shared',
                        'Insert:group_0']
    assert steps[1] == ['Carry:shallow', 'Insert:deep_1', 'Insert:shared',
                        'Carry:group_0']
    assert steps[2] == ['Carry:shallow', 'Insert:deep_2', 'Insert:shared',
                        'Insert:group_2']
    assert twin.prompter.num_prompts == [9, 9, 9, 9]
    # one shared tensor, a fresh deep tensor per block, one per group
    names = {n for n, _ in twin.prompter.named_parameters()}
    assert names == {f'sources.{s}.tokens' for s in
                     ['shallow', 'shared', 'group_0', 'group_2'] +
                     [f'deep_{i}' for i in range(4)]}


def test_vpt_init_bound_and_dropout():
    _, twin = seg_pair(prompt=deep(num_tokens=50))
    bound = (6 / (3 * 8 * 8 + 32)) ** 0.5
    tokens = twin.prompter.sources['deep_0'].tokens
    assert tokens.abs().max() <= bound and tokens.abs().max() > 0.9 * bound
    assert twin.prompter.sources['deep_0'].dropout.p == 0.1


@pytest.mark.parametrize('decoupled', [False, True])
def test_dropping_dead_prompt_outputs_keeps_instance_outputs(decoupled):
    """VPT-deep prompts die after every block, so the engine skips their
    queries and FFN; instance outputs must not change."""
    prompt = deep(attention=dict(decoupled=decoupled, lambda_d=0.3))
    _, twin = seg_pair(prompt=prompt)
    method = twin.prompter
    assert not any(spec.kept for spec in method.specs(training=False))
    img = torch.randn(2, 3, 32, 32)
    fast = twin(img)
    method.reads_prompt_outputs = lambda block, training: True
    method.reset_specs()
    assert all(spec.kept for spec in method.specs(training=False))
    _close(fast, twin(img))


@pytest.mark.parametrize('pair,drop', [
    (seg_pair, dict(attn_drop_rate=0.5)),
    (pretrain_pair, dict(layer_cfgs=dict(attn_drop_rate=0.5))),
])
def test_frozen_blocks_run_without_attention_dropout_in_training(pair, drop):
    """Frozen blocks stay in eval mode while the prompts train: their
    attention dropout is off too, so two training passes agree (prompt
    dropout 0)."""
    _, twin = pair(prompt=deep(dropout=0.0), **drop)
    twin.train()
    img = torch.randn(2, 3, 32, 32)
    _close(twin(img), twin(img))
    # unfrozen (full fine-tuning), the host's attention dropout is back on
    _, full = pair(prompt=deep(dropout=0.0), freeze_backbone=False, **drop)
    full.train()
    assert not torch.allclose(full(img)[-1], full(img)[-1])


def test_cls_attention_ranks_from_fp32_logits_under_autocast():
    from mmship.core.attention import cls_attention
    torch.manual_seed(0)
    q = torch.randn(2, 2, 50, 16)
    k = torch.randn(2, 2, 50, 16)
    exact = cls_attention(q, k)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under = cls_attention(q, k)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, exact, atol=1e-6, rtol=1e-5)


# -- the tap: forward_intermediates ---------------------------------------------
@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
def test_forward_intermediates_are_the_block_outputs(pair):
    """The tap gives the raw block outputs (the host's final norm only with
    norm=True), of the frozen host unless with_method, and runs no block
    after the last index."""
    kw = dict(out_type='raw', final_norm=True) if pair is pretrain_pair \
        else dict(final_norm=True)
    host, twin = pair(prompt=deep(num_tokens=2, dropout=0.0),
                      out_indices=(3, ), **kw)
    img = torch.randn(2, 3, 32, 32)
    last, = twin.forward_intermediates(img, [-1], with_method=False)
    normed, = twin.forward_intermediates(img, [3], norm=True,
                                         with_method=False)
    torch.testing.assert_close(normed, twin._final_norm(last))
    assert not torch.allclose(normed, last, atol=1e-3)
    if pair is pretrain_pair:   # raw host output = normed last tokens
        torch.testing.assert_close(normed, host(img)[0], atol=1e-5,
                                   rtol=1e-5)
    prompted, = twin.forward_intermediates(img, [3])
    assert not torch.allclose(prompted, last, atol=1e-4)
    # early stop: block 3 is not run for index 1
    ran = []
    for i, layer in enumerate(twin.layers):
        layer.ln1.register_forward_pre_hook(
            lambda module, args, i=i: ran.append(i))
    two = twin.forward_intermediates(img, [1, 0], with_method=False)
    assert ran == [0, 1] and [t.shape for t in two] == [last.shape] * 2
    with pytest.raises(IndexError, match='blocks 0..3'):
        twin.forward_intermediates(img, [4])
