"""Access to the official FasterViT implementation for side-by-side measurements.

The official package (PyPI ``fastervit``, non-commercial licence) is never a dependency of this
project: it lives in a separate environment (built by ``make-reference-env.sh`` next to the project)
whose site-packages are appended to ``sys.path`` on request, after this environment's own packages.
"""
import glob
import site
from typing import Tuple

import torch

from mmfastervit.checkpoint.official import check_and_load, convert_official_state_dict
from mmfastervit.models.fastervit import FasterViT, resolve_arch

OFFICIAL_NAMES = {'4-21k-224': 224, '4-21k-384': 384, '4-21k-512': 512, '4-21k-768': 768}


def import_official(reference_env: str):
    dirs = glob.glob(f'{reference_env}/lib/python3*/site-packages')
    if not dirs:
        raise FileNotFoundError(f'no site-packages under {reference_env}: build the reference '
                                f'environment first (make-reference-env.sh)')
    for site_dir in dirs:
        site.addsitedir(site_dir)
    from fastervit.models import faster_vit, faster_vit_any_res
    return faster_vit, faster_vit_any_res


def official_and_ours(reference_env: str, arch: str, height: int,
                      width: int) -> Tuple[torch.nn.Module, FasterViT]:
    """The official network for a (height, width) input and our backbone with the same weights.

    At the variant's native square resolution that is the official fixed-resolution network (the
    one its checkpoints are for); at any other size, the official any-resolution network built for
    exactly that size."""
    faster_vit, faster_vit_any_res = import_official(reference_env)
    native = OFFICIAL_NAMES.get(arch, 224)
    factory = f'faster_vit_{arch.replace("-", "_")}' + ('' if arch in OFFICIAL_NAMES else '_224')
    if (height, width) == (native, native):
        official = getattr(faster_vit, factory)()
    else:
        s = resolve_arch(arch)
        official = faster_vit_any_res.FasterViT(
            dim=s['dim'], in_dim=s['in_dim'], depths=s['depths'], num_heads=s['num_heads'],
            window_size=s['window_size'], ct_size=s['ct_size'], mlp_ratio=s['mlp_ratio'],
            hat=s['hat'], layer_scale=s['layer_scale'], do_propagation=s['propagation'],
            resolution=[height, width])
    backbone, _ = convert_official_state_dict(official.state_dict())
    ours = FasterViT(arch=arch)
    check_and_load(ours, backbone, f'official {factory}', tuple(f'norm{i}.' for i in range(4)))
    return official, ours


def switch_official_to_deploy(official: torch.nn.Module, example: torch.Tensor) -> None:
    """The official inference mode: one forward computes the positional terms for the input size,
    then ``switch_to_deploy`` freezes them into buffers (needed before ``torch.compile``)."""
    with torch.no_grad():
        official(example)
    for module in official.modules():
        if hasattr(module, 'switch_to_deploy'):
            module.switch_to_deploy()
