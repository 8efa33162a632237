"""The Twins and NAS-Bench-Macro families' latency parts (vitnas.latency_table): every part of a
network is in the space's table, each part's real module runs on its shape (a chained one keeps
it), the prediction is the sum of the parts and one layer's change changes its part only, and the
config check accepts a latency search for them. No timing is asserted (fake timers)."""
import random

import pytest
import torch
import yaml

from vitnas import checks, config, latency_table as lt
from vitnas.arch import Stage
from vitnas.families import build_space

CONFIGS = {"twins": "config/config.yaml", "macro": "config/nasbench_macro.yaml"}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def space(request):
    with open(CONFIGS[request.param]) as f:
        return build_space(config.for_space(config.validate(yaml.safe_load(f)), request.param))


def ends(space) -> int:
    """Parts a network has besides its computing layers: twins a skeleton, macro stem and head."""
    return 1 if space.family == "twins" else 2


def archs(space, n: int = 30, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [space.sample(rng, rng.random()) for _ in range(n)]


def key_seconds(key: tuple) -> float:
    """A deterministic stand-in for a part's time: a constant of its key."""
    return 1e-6 * (1 + sum(v if isinstance(v, int) else len(v) for v in key))


def test_every_part_of_a_network_is_in_the_table(space):
    assert space.has_latency
    every = {b.key for b in space.all_latency_blocks()}
    for arch in archs(space):
        parts = space.latency_blocks(arch)
        assert len(parts) == ends(space) + arch.depth
        assert {p.key for p in parts} <= every


def test_each_part_is_a_real_module_on_its_shape(space):
    torch.manual_seed(0)
    with torch.inference_mode():
        for part in {b.key: b for b in space.all_latency_blocks()}.values():
            out = part.build().eval()(torch.randn(1, *part.shape))
            if part.chain:
                assert out.shape == (1, *part.shape), part.key
            elif part.key[0] in ("skeleton", "head"):
                assert out.shape == (1, space.num_classes)


def test_twins_skeleton_runs_the_network_without_its_blocks():
    """The skeleton is TwinsNet with pass-through blocks: each stage's position conv runs, no
    Block does."""
    with open(CONFIGS["twins"]) as f:
        space = build_space(config.for_space(config.validate(yaml.safe_load(f)), "twins"))
    skeleton = space.latency_blocks(space.largest())[0]
    net = skeleton.build().eval()
    assert not [m for m in net.modules() if type(m).__name__ == "Block"] and not skeleton.chain
    calls = []
    for pos in net.pos_block:
        pos.register_forward_hook(lambda *_: calls.append(1))
    net(torch.randn(1, *skeleton.shape))
    assert len(calls) == len(space.stages)


def one_layer_changed(space, arch):
    """`arch` with its first stage's first layer made wider (twins: more heads or MLP; macro: the
    other block), and the index of that layer's part."""
    stage = arch.stages[0]
    if space.family == "twins":
        st, old = space.stages[0], stage.layers[0]
        ratio = st.mlp_ratios[-1] if st.ratio(stage.embed, old.mlp) != st.mlp_ratios[-1] else st.mlp_ratios[0]
        new = space._layer(stage.embed, old.heads, ratio)
    else:
        from vitnas.families.macro.space import layer

        old = stage.layers[0]
        new = layer("ir_3x3_t3" if old.op == "ir_5x5_t6" else "ir_5x5_t6", arch.stem, True)
    changed = Stage(stage.embed, (new,) + stage.layers[1:], ws=stage.ws, sr=stage.sr)
    return type(arch)(patch=arch.patch, stages=(changed,) + arch.stages[1:], family=arch.family, stem=arch.stem), \
        ends(space)


def test_prediction_is_the_sum_and_one_layer_changes_its_part_only(space):
    table = lt.LatencyTable(lt.fingerprint("cpu", 1, space.img_size, space.in_chans),
                            {lt.key_text(b.key): key_seconds(b.key) for b in space.all_latency_blocks()})
    for arch in archs(space, 10, seed=1):
        parts = space.latency_blocks(arch)
        assert table.seconds(parts) == pytest.approx(sum(key_seconds(p.key) for p in parts))
        other, at = one_layer_changed(space, arch)
        assert space.contains(other)
        new = space.latency_blocks(other)
        assert [i for i, (a, b) in enumerate(zip(parts, new)) if a.key != b.key] == [at]
        assert table.seconds(new) - table.seconds(parts) == pytest.approx(
            key_seconds(new[at].key) - key_seconds(parts[at].key))


def test_twins_block_part_follows_the_block_kind():
    """LSA at a stage's even computing blocks (window keyed), GSA at the odd ones (ratio keyed)."""
    with open(CONFIGS["twins"]) as f:
        space = build_space(config.for_space(config.validate(yaml.safe_load(f)), "twins"))
    arch = space.largest()
    parts = space.latency_blocks(arch)[1:]
    first = [p.key[5:] for p in parts[:arch.stages[0].depth]]
    ws, sr = arch.stages[0].ws, arch.stages[0].sr
    assert first == ([("lsa", ws), ("gsa", sr)][:len(first)] if ws > 1 else [("gsa", sr)] * len(first))
    block = parts[0].build().block
    assert block.attn.num_heads == arch.stages[0].blocks[0].heads
    assert block.mlp.fc1.out_features == arch.stages[0].blocks[0].mlp


@pytest.mark.parametrize("family", ["twins", "macro"])
def test_the_config_check_accepts_a_latency_search(family):
    cfg = config.validate({"spaces": {"t": {"family": family}},
                           "supernet": {"per_budget": False, "identity_prob": 0.5},
                           "search": {"constraint": "latency", "budgets": ["5ms"]}})
    checks.check_experiment(cfg)
