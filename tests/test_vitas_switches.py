"""ViTAS's supernet techniques as switches: private Q/K per head count, bilateral slicing and the
budget-driven identity probability, each checked against the supernet invariants."""
import itertools
import json
import math
import random
from collections import Counter

import pytest
import torch

from conftest import perturbed_supernet, traced_macs
from vitnas import config, data
from vitnas.arch import Arch
from vitnas.errors import SpaceError
from vitnas.families import build_space
from vitnas.spaces import identity_prob_for_budget, sampling_record
from vitnas.supernet import train as supernet_train
from vitnas.supernet.sharing import POLICIES, channel_paths, channel_windows
from vitnas.families.vit.supernet import ViTSupernet, export

# sharing, private_qk, identity_shifting, private_tokens
SWITCHES = list(itertools.product(POLICIES, (False, True), (True, False), (True, False)))


def build(sharing: str, private_qk: bool, shifting: bool = True, private_tokens: bool = True) -> ViTSupernet:
    return perturbed_supernet(sharing, private_qk, shifting, private_tokens=private_tokens)


@pytest.mark.parametrize("sharing, private_qk, shifting, private_tokens", SWITCHES)
def test_export_equivalence_and_macs_under_every_switch(sharing, private_qk, shifting, private_tokens):
    """The supernet's logits are the sum of its exported paths (one path unless bilateral), and
    every exported model costs exactly the analytic MACs and parameters."""
    net = build(sharing, private_qk, shifting, private_tokens)
    space, rng = net.space, random.Random(0)
    x = torch.randn(3, 1, 28, 28)
    for _ in range(6):
        arch = space.sample(rng, 0.4)
        paths = range(2 if sharing == "bilateral" else 1)
        models = [export(net, arch, path).eval() for path in paths]
        with torch.no_grad():
            torch.testing.assert_close(net(x, arch), sum(m(x) for m in models), rtol=0, atol=1e-5)
            for model in models:
                model.set_fused_attn(False)  # FlopCounterMode sees nothing inside fused SDPA on CPU
                assert traced_macs(model, x[:1]) == space.macs(arch)
                assert sum(p.numel() for p in model.parameters()) == space.params(arch)


def test_private_tokens_switch_owns_or_shares_the_stem():
    """Private: a patch kernel, class token and position table per patch size, each used by its
    own patch size only. Shared: one of each (the largest kernel, the finest grid), resampled with
    timm's PI-resize and bicubic position resampling, and used by every patch size."""
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    private, shared = build("cyclic", True), build("cyclic", True, private_tokens=False)
    assert sorted(private.patch_embed) == ["4", "7"] and sorted(private.pos_embed) == ["4", "7"]
    assert list(shared.patch_embed) == list(shared.cls_token) == list(shared.pos_embed) == ["shared"]
    assert shared.patch_embed["shared"].weight.shape[-2:] == (7, 7)
    assert shared.pos_embed["shared"].shape[1] == 7 * 7 + 1  # patch 4's grid + the class token
    arch4 = Arch.uniform(4, 64, 2, 2, 32, 64, max_layers=6, family="vit")
    arch7 = Arch.uniform(7, 64, 2, 2, 32, 64, max_layers=6, family="vit")
    ch = shared.paths[64][0]  # width 64's cyclic window (a rotation of all 64 channels)
    w, pos = shared.patch_embed["shared"].weight[ch], shared.pos_embed["shared"][..., ch]
    m4, m7 = export(shared, arch4), export(shared, arch7)
    with torch.no_grad():
        torch.testing.assert_close(m4.patch_embed.proj.weight, resample_patch_embed(w, [4, 4]))
        torch.testing.assert_close(m4.pos_embed, pos)  # the finest grid is the table itself
        assert torch.equal(m7.patch_embed.proj.weight, w)
        torch.testing.assert_close(m7.pos_embed, resample_abs_pos_embed(pos, [4, 4], num_prefix_tokens=1))
    x = torch.randn(2, 1, 28, 28)
    for net, owner, shares in ((private, "7", False), (shared, "shared", True)):
        with torch.no_grad():
            before = net(x, arch4)
            w = net.patch_embed[owner].weight  # patch 7's kernel (or the only one)
            w.add_(torch.randn_like(w))  # (a constant would vanish in the LayerNorms)
            assert torch.allclose(before, net(x, arch4)) != shares


def test_bilateral_export_is_the_first_window_and_training_reaches_both():
    net = build("bilateral", False)
    arch = Arch.uniform(4, 32, 3, 2, 32, 64, max_layers=6, family="vit")  # width 32 of C = 64
    x = torch.randn(2, 1, 28, 28)
    model = export(net, arch).eval()
    weight = net.patch_embed["4"].weight
    assert torch.equal(model.patch_embed.proj.weight, weight[:32])
    assert torch.equal(export(net, arch, path=1).patch_embed.proj.weight, weight[32:])
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, arch, path=0), rtol=0, atol=1e-5)
        # What is true: the deployable network is one path; the supernet scores both together.
        assert not torch.allclose(model(x), net(x, arch), atol=1e-3)
    net(x, arch).sum().backward()
    grad = weight.grad.flatten(1).abs().sum(1)
    assert (grad[:32] > 0).all() and (grad[32:] > 0).all()  # prefix would leave 32..63 untouched


@pytest.mark.parametrize("widths, total", [((32, 48, 64), 64), ((38, 77, 115, 154, 192), 192)])
def test_channel_usage_of_each_policy(widths, total):
    usage = {policy: [Counter(i for idx in channel_windows(widths, total, policy).values()
                              for i in idx)[ch] for ch in range(total)] for policy in POLICIES}
    n = len(widths)
    prefix, cyclic, bilateral = usage["prefix"], usage["cyclic"], usage["bilateral"]
    assert prefix[0] == n and prefix[-1] == 1  # channel 0 serves every width, the last one only C
    assert max(cyclic) - min(cyclic) <= 1 and sum(cyclic) == sum(widths)
    # Bilateral: both ends serve every width (the full width twice, once per path), mirror-symmetric.
    assert bilateral[0] == bilateral[-1] == n + 1
    assert bilateral == bilateral[::-1] and sum(bilateral) == 2 * sum(widths)
    for c, (first, last) in channel_paths(widths, total, "bilateral").items():
        assert first == list(range(c)) and last == list(range(total - c, total))


def test_private_qk_belong_to_their_head_count():
    net = build("prefix", True)
    block = net.blocks[0]
    two, four = (Arch.uniform(4, 64, 2, h, 64, 128, max_layers=6, family="vit") for h in (2, 4))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        before_two, before_four = net(x, two), net(x, four)
        block.qk["2"].weight[:64] += 0.2 * torch.randn(64, 64)  # the Q rows of the 2-head choice
        assert not torch.allclose(net(x, two), before_two, atol=1e-4)
        assert torch.equal(net(x, four), before_four)
        block.v.weight.add_(0.2)  # V is shared by every head count
        assert not torch.allclose(net(x, four), before_four, atol=1e-4)
    # The exported block is a plain timm block: fused rows [Q_h | K_h | V], a q-wide layer taking
    # the first q rows of each.
    narrow = Arch.uniform(4, 64, 2, 2, 32, 128, max_layers=6, family="vit")
    qkv = export(net, narrow).blocks[0].attn.qkv.weight
    assert torch.equal(qkv[:32], block.qk["2"].weight[:32])
    assert torch.equal(qkv[32:64], block.qk["2"].weight[64:96])
    assert torch.equal(qkv[64:], block.v.weight[:32])


@pytest.fixture(scope="module")
def space():
    return build_space(config.validate({}))  # 6 layers, min depth 2; mean MACs 1.7M..5.1M


@pytest.mark.parametrize("budget", [2.7e6, 4e6])
def test_identity_prob_lands_in_the_window_deterministically(space, budget):
    p, mean, trace = identity_prob_for_budget(space, budget, random.Random(0), n=300)
    assert 0.9 * budget <= mean <= budget and trace[-1] == (p, mean)
    steps = [round(b[0] - a[0], 6) for a, b in zip(trace, trace[1:])]
    assert trace[0][0] == 0.5 and len(set(steps)) <= 1 and set(steps) <= {0.01, -0.01}
    assert all(m < 0.9 * budget for _, m in trace[:-1]) or all(m > budget for _, m in trace[:-1])
    assert identity_prob_for_budget(space, budget, random.Random(0), n=300) == (p, mean, trace)


@pytest.mark.parametrize("budget, window", [(1e6, "[900K, 1M]"), (12e6, "[10.8M, 12M]")])
def test_unreachable_budget_names_the_reachable_range(space, budget, window):
    with pytest.raises(SpaceError) as e:
        identity_prob_for_budget(space, budget, random.Random(0), n=100)
    message = str(e.value)
    assert "\n" not in message and f"into [0.9 C, C] = {window}" in message
    assert "no identity probability in [0, 1]" in message and "use a budget in about [" in message


def test_sampling_near_p_1_is_the_conditioned_distribution(space):
    rng = random.Random(0)
    assert all(space.sample(rng, 1.0).depth == space.min_depth for _ in range(20))
    # p = 0.95 mixes rejection and the direct draw; both must give the truncated binomial.
    n, p = space.max_layers, 0.95
    pmf = {d: math.comb(n, d) * (1 - p) ** d * p ** (n - d) for d in range(space.min_depth, n + 1)}
    expected = sum(d * w for d, w in pmf.items()) / sum(pmf.values())
    depths = [space.sample(rng, p).depth for _ in range(3000)]
    assert sum(depths) / len(depths) == pytest.approx(expected, abs=0.03)


def test_identity_prob_per_budget_and_shared(space):
    cfg = config.validate({"supernet": {"identity_prob": "budget"}, "search": {"budgets": ["4M", "2.7M"]}})
    shared = sampling_record(cfg, space)  # one supernet for every budget: the smallest drives p
    assert shared["source"] == "budget" and shared["prob_budget"] == "2.7M" and shared["budget"] == "shared"
    assert 0.9 * 2.7e6 <= shared["mean_macs"] <= 2.7e6
    own = sampling_record(cfg, space, "4M")  # the supernet of 4M: p found for 4M (ViTAS)
    assert own["prob_budget"] == "4M" and 0.9 * 4e6 <= own["mean_macs"] <= 4e6
    assert own["identity_prob"] < shared["identity_prob"]  # a larger budget: deeper networks
    fixed = sampling_record(config.validate({"supernet": {"identity_prob": 0.3}}), space, "4M")
    assert fixed["identity_prob"] == 0.3 and fixed["source"] == "config"
    with pytest.raises(config.ConfigError, match="supernet.identity_prob"):
        config.validate({"supernet": {"identity_prob": "auto"}})


def test_supernet_stage_logs_the_identity_prob_it_trains_with(fake_fmnist, tmp_path, capsys):
    cfg = config.validate({
        "data": {"root": str(fake_fmnist), "search_per_class": 5, "train_limit": 100, "test_limit": 20},
        "supernet": {"identity_prob": "budget", "sharing": "bilateral", "private_qk": True,
                     "max_steps": 2, "batch_size": 8, "warmup_steps": 1, "eval_images": 10,
                     "health_random": 1, "eval_batch_size": 10},
        "search": {"budgets": ["2.7M", "4M"]}})
    data.prepare(cfg, tmp_path / "data")
    out = tmp_path / "supernet"
    supernet_train.run(cfg, tmp_path / "data", out / "supernet.safetensors", out / "train_log.csv",
                       out / "health.json", tmp_path / "ckpt", budget="4M")
    logged = json.loads((out / "identity_prob.json").read_text())
    assert logged == sampling_record(cfg, build_space(cfg), "4M")
    assert logged["budget"] == "4M" and 0.9 * 4e6 <= logged["mean_macs"] <= 4e6
    err = capsys.readouterr().err
    assert f"identity probability {logged['identity_prob']:.2f}" in err and "layer activity over 2 sub-networks" in err
    health = json.loads((out / "health.json").read_text())
    assert health["budget"] == "4M" and health["usage"]["steps"] == 2 and len(health["usage"]["layer_active"]) == 6
    net = supernet_train.load_supernet(cfg, out / "supernet.safetensors")
    assert "blocks.0.qk.2.weight" in net.state_dict() and "blocks.0.v.weight" in net.state_dict()
