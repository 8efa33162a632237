"""The export stage's file: a searched network with the supernet's inherited weights, written as
retraining writes its models, reads back (model_file.load_model) to the supernet's forward for every
family, and loads strict into timm's own model where timm has it (vit: VisionTransformer, twins:
Twins; resnas: our timm-block ResNASViT)."""
import random
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

from conftest import perturb_
from test_family_contract import assert_float32_close, images, tiny_space
from vitnas import config, families
from vitnas.export import export_model
from vitnas.model_file import load_arch as read_arch, load_model, save_model


def supernet(name: str):
    space = tiny_space(name)
    torch.manual_seed(0)
    return perturb_(families.get(name).build_supernet(space, config.validate({})["supernet"])).eval()


@pytest.mark.parametrize("name", families.names())
def test_exported_file_equals_the_supernet_forward(name, tmp_path):
    net = supernet(name)
    x = images(net.space)
    for i, arch in enumerate([net.space.sample(random.Random(3), 0.4), net.space.largest()]):
        save_model(export_model(net, arch), arch, tmp_path / f"{i}.safetensors")
        assert read_arch(tmp_path / f"{i}.safetensors") == arch
        model = load_model(tmp_path / f"{i}.safetensors", net.space).eval()
        with torch.no_grad():
            assert_float32_close(model(x), net(x, arch), arch.depth)


def uniform_vit(arch):
    """Every computing block like the first, with timm's head width (qkv = embed): what timm's
    VisionTransformer, one head count and MLP ratio for all blocks, can hold."""
    first = arch.blocks[0]
    layer = replace(first, heads=first.heads, qkv=arch.embed) if hasattr(first, "qkv") else first
    return replace(arch, stages=tuple(replace(s, layers=tuple(replace(layer, identity=l.identity) for l in s.layers))
                                      for s in arch.stages))


def test_vit_export_loads_strict_into_timms_vision_transformer(tmp_path):
    net = supernet("vit")
    arch = uniform_vit(net.space.sample(random.Random(5), 0.3))
    assert net.space.contains(arch), arch
    save_model(export_model(net, arch), arch, tmp_path / "m.safetensors")
    block = arch.blocks[0]
    theirs = VisionTransformer(img_size=net.space.img_size, patch_size=arch.patch, in_chans=net.space.in_chans,
                               num_classes=net.space.num_classes, embed_dim=arch.embed, depth=len(arch.blocks),
                               num_heads=block.heads, mlp_ratio=block.mlp / arch.embed, qkv_bias=True).eval()
    theirs.load_state_dict(load_file(tmp_path / "m.safetensors"), strict=True)
    x = images(net.space)
    with torch.no_grad():
        assert_float32_close(theirs(x), net(x, arch), arch.depth)


def test_twins_export_loads_strict_into_timms_twins(tmp_path):
    from test_twins import timm_twins, uniform

    net = supernet("twins")
    arch = uniform(net.space, net.space.sample(random.Random(3), 0.5))
    if not net.space.contains(arch):
        pytest.skip("the uniform sub-network lies outside the default space")
    save_model(export_model(net, arch), arch, tmp_path / "m.safetensors")
    sp = net.space
    theirs = timm_twins(arch, sp.img_size, sp.in_chans, sp.num_classes).eval()
    theirs.load_state_dict(load_file(tmp_path / "m.safetensors"), strict=True)
    x = images(sp)
    with torch.no_grad():
        assert_float32_close(theirs(x), net(x, arch), arch.depth)


def test_resnas_export_loads_strict_into_the_timm_block_model(tmp_path):
    from vitnas.families.resnas.model import ResNASViT

    net = supernet("resnas")
    sp = net.space
    arch = sp.sample(random.Random(2), 0.4)
    save_model(export_model(net, arch), arch, tmp_path / "m.safetensors")
    model = ResNASViT(arch, sp.img_size, sp.in_chans, sp.num_classes, residual=sp.residual).eval()
    model.load_state_dict(load_file(tmp_path / "m.safetensors"), strict=True)
    x = images(sp)
    with torch.no_grad():
        assert_float32_close(model(x), net(x, arch), arch.depth)
