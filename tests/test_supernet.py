"""The vit supernet beyond the family contract (test_family_contract.py): drop path, timm's keys,
timm's own DeiT counts, cyclic sharing (every switch: test_vitas_switches.py)."""
from collections import Counter

import pytest
import timm
import torch

from conftest import perturbed_supernet, traced_macs
from vitnas.arch import Arch
from vitnas.families.vit.space import ViTSpace
from vitnas.supernet.sharing import channel_windows
from vitnas.families.vit.supernet import ViTSupernet, export


def build(sharing: str, shifting: bool) -> ViTSupernet:
    return perturbed_supernet(sharing, shifting=shifting)


def test_drop_path_acts_in_training_only():
    """`supernet.drop_path` (the ablation's DeiT recipe) drops residual branches while training;
    in eval mode the supernet still equals its export."""
    net = perturbed_supernet("cyclic", private_qk=True, drop_path=0.5)
    arch = net.space.largest()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x, arch), export(net, arch)(x), rtol=0, atol=1e-5)
        net.train()
        torch.manual_seed(0)
        a = net(x, arch)
        torch.manual_seed(1)
        assert not torch.allclose(a, net(x, arch))  # a different draw of dropped branches
    assert [getattr(b.drop_path, "drop_prob", 0.0) for b in net.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


def test_export_keeps_timm_keys_and_a_changed_weight_changes_the_output():
    net = build("prefix", True)
    arch = net.space.largest()
    model = export(net, arch)
    assert "blocks.0.attn.qkv.weight" in model.state_dict() and "head.weight" in model.state_dict()
    x = torch.randn(2, 1, 28, 28)
    before = net(x, arch)
    with torch.no_grad():
        net.blocks[0].fc2.weight[0, 0] += 1.0
    assert not torch.allclose(before, net(x, arch))


@pytest.mark.parametrize("name, embed, heads", [("deit_tiny_patch16_224", 192, 3),
                                                 ("deit_small_patch16_224", 384, 6)])
def test_counter_matches_timms_own_deit(name, embed, heads):
    model = timm.create_model(name, pretrained=False).eval()
    for block in model.blocks:
        block.attn.fused_attn = False
    space = ViTSpace((16,), (embed,), 12, 1, (heads,), (embed,), (4 * embed,), 224, 3, 1000)
    arch = Arch.uniform(16, embed, 12, heads, embed, 4 * embed, family="vit")
    with torch.no_grad():
        assert traced_macs(model, torch.randn(1, 3, 224, 224)) == space.macs(arch)
    assert sum(p.numel() for p in model.parameters()) == space.params(arch)


@pytest.mark.parametrize("widths, total", [((32, 48, 64), 64), ((38, 77, 115, 154, 192), 192)])
def test_cyclic_sharing_balances_channel_usage(widths, total):
    def usage(policy):
        return Counter(c for idx in channel_windows(widths, total, policy).values() for c in idx)

    cyclic, prefix = usage("cyclic"), usage("prefix")
    assert max(cyclic.values()) - min(cyclic.values()) <= 1
    assert sorted(cyclic.values()) != sorted(prefix.values())
    assert prefix[0] == len(widths) and prefix[total - 1] == 1  # prefix: channel 0 serves all
    for c, idx in channel_windows(widths, total, "cyclic").items():
        assert len(set(idx)) == c
