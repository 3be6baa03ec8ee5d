"""Property-based tests of the backbone over random sizes, batch sizes and variant structures."""
import functools

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmfastervit  # noqa: F401
from mmfastervit.models.fastervit import ARCH_SETTINGS, FasterViT

# The official variants' structures (depths, windows, carrier tokens, propagation, layer scale) at
# a small width, so that sizes up to 1100 px stay cheap on a CPU.
STRUCTURES = {
    '0': dict(depths=(1, 1, 2, 2), hat=(False, False, True, False)),
    '4': dict(depths=(1, 1, 3, 2), hat=(False, False, True, False), layer_scale=0.1,
              propagation=True),
    '4-21k-224': dict(depths=(1, 1, 2, 1), window_size=ARCH_SETTINGS['4-21k-224']['window_size'],
                      hat=(False, ) * 4, layer_scale=0.1, propagation=True),
}


@functools.lru_cache(maxsize=None)
def small_model(structure: str) -> FasterViT:
    torch.manual_seed(0)
    arch = dict(dim=8, in_dim=8, num_heads=(1, 2, 2, 4), **STRUCTURES[structure])
    return FasterViT(arch=arch).eval()


sizes = st.integers(min_value=32, max_value=1100)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structure=st.sampled_from(sorted(STRUCTURES)), height=sizes, width=sizes,
       batch=st.integers(min_value=1, max_value=3), seed=st.integers(0, 2**16))
def test_shapes_finiteness_batch_independence_and_determinism(structure, height, width, batch,
                                                              seed):
    model = small_model(structure)
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        batched = model(images)
        again = model(images)
        alone = [model(images[i:i + 1]) for i in range(batch)]
    for stage, out in enumerate(batched):
        stride = 4 * 2**stage
        assert out.shape == (batch, 8 * 2**stage, -(-height // stride), -(-width // stride))
        assert torch.isfinite(out).all()
        assert torch.equal(out, again[stage])  # eval outputs are deterministic
        for i in range(batch):  # no leakage across the batch (window/carrier reshuffles)
            torch.testing.assert_close(out[i:i + 1], alone[i][stage], rtol=1e-4, atol=1e-5)
