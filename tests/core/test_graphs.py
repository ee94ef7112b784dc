"""cuda_graph=True (``mmship/core/graphs.py``): where steps are captured and
where they run eagerly.  That captured steps equal eager ones is in the
contract suite (``test_cuda_graph_steps_equal_eager``, CUDA only)."""
import copy
import os
import os.path as osp
import pickle
import textwrap

import pytest
import torch

from conftest import REPO, run_tool
import mmship.core.graphs as graphs
from mmship.core.graphs import StepGraphs
from tiny import seg_pair

VPT = dict(type='Prompter', dropout=0.0,
           placements=[dict(kind='deep', num_tokens=3)])


def test_cpu_steps_run_eagerly_and_equal_the_uncaptured_backbone():
    torch.manual_seed(0)
    _, plain = seg_pair(prompt=VPT)
    _, graphed = seg_pair(prompt=VPT, cuda_graph=True)
    graphed.load_state_dict(plain.state_dict())
    img = torch.randn(2, 3, 32, 32)
    for model in (plain, graphed):
        model.train()
    for a, b in zip(plain(img), graphed(img)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert len(graphed._graphs) == 0


def test_copies_do_not_share_captured_steps():
    """mmengine's EMA deep-copies the model; checkpoints pickle it."""
    _, model = seg_pair(prompt=VPT, cuda_graph=True)
    model._graphs._graphed['signature'] = object()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert isinstance(clone._graphs, StepGraphs)
        assert len(clone._graphs) == 0
    assert len(model._graphs) == 1


def test_moving_the_backbone_drops_its_graphs():
    _, model = seg_pair(prompt=VPT, cuda_graph=True)
    model._graphs._graphed['signature'] = object()
    model.to(torch.float64)
    assert len(model._graphs) == 0


def test_a_failed_capture_puts_the_generator_back(monkeypatch):
    """The restore's control flow, on a stand-in generator (CPU generators
    cannot swap states); the CUDA test below runs the real one."""
    restored = []

    class Generator:
        def clone_state(self):
            return 'before the capture'

        graphsafe_set_state = staticmethod(restored.append)

    monkeypatch.setattr(torch.cuda, 'default_generators',
                        (None, Generator()))
    cuda1 = torch.device('cuda', 1)
    with graphs._generator_restored_on_failure(cuda1):
        pass
    assert restored == []
    with pytest.raises(KeyboardInterrupt):
        with graphs._generator_restored_on_failure(cuda1):
            raise KeyboardInterrupt
    assert restored == ['before the capture']


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_capture_of_a_host_synchronising_forward_names_the_switch():
    """DA-VPT's segmentation features gather the classes present in each
    image (a nonzero): no fixed-shape graph exists for that."""
    prompt = dict(type='DAVPTPrompter', num_classes=4, num_tokens=3,
                  num_proxies=4, proxy_num_tokens=5, dropout=0.0)
    _, model = seg_pair(prompt=prompt, cuda_graph=True)
    model = model.cuda().train()
    seg = torch.randint(0, 4, (2, 32, 32), device='cuda')
    targets = dict(seg_maps=seg, num_classes=4, ignore_index=255,
                   class_sets=torch.ones(2, 4, dtype=torch.bool,
                                         device='cuda'))
    img = torch.randn(2, 3, 32, 32, device='cuda')
    rng_state = torch.cuda.get_rng_state()
    with pytest.raises(RuntimeError, match='cuda_graph=False'):
        model.forward_with_losses(img, targets)
    # the generator left capture mode where it was: later draws work
    assert torch.equal(torch.cuda.get_rng_state(), rng_state)
    torch.randn(2, device='cuda')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_capture_of_the_first_kernel_launches_succeeds(tmp_path):
    """A fresh process with an empty Triton cache captures a SHIP step
    first thing, prompt dropout on: the captured step takes the prompt
    kernels, and its warm-up launched them first (``step_capture``)."""
    script = textwrap.dedent('''
        import torch
        import mmship.core.attention as attention
        from tiny import seg_pair
        launches = []
        kernel = attention.prompt_branch   # blocks this small: the one kernel
        attention.prompt_branch = lambda *a: launches.append(
            torch.cuda.is_current_stream_capturing()) or kernel(*a)
        prompt = dict(type='SHIPPrompter', starts=[0, 2, 3], num_tokens=4,
                      ssp_tokens=2, ap_groups=2, ap_tokens=2,
                      pml_tokens=3, prototypes=torch.randn(5, 32))
        _, model = seg_pair(prompt=prompt, cuda_graph=True)
        model = model.cuda().train()
        for _ in range(2):
            feats = model(torch.randn(2, 3, 32, 32, device='cuda'))
            sum(f.float().mean() for f in feats).backward()
        torch.cuda.synchronize()
        assert True in launches, 'the captured step took SDPA'
        assert launches.index(True) > 0, 'the warm-up took SDPA'
        assert len(model._graphs) == 1
        print('captured')
    ''')
    path = os.pathsep.join([osp.join(REPO, 'tests'), REPO,
                            os.environ.get('PYTHONPATH', '')])
    proc = run_tool(['python', '-c', script], env=dict(
        TRITON_CACHE_DIR=str(tmp_path), PYTHONPATH=path), timeout=600)
    assert 'captured' in proc.stdout
