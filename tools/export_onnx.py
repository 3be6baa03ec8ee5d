"""Export a FasterViT backbone to ONNX with dynamic batch, height and width.

    python tools/export_onnx.py --arch 2 --checkpoint fastervit_2_224_1k.pth.tar --out fastervit-2.onnx --verify

The graph returns the four stage features. It is valid for inputs whose sides are at least
``--min-size`` (default 128): from that size on, every HAT stage holds several windows, so carrier
tokens always take part (below it the network takes another path). ``--verify`` runs the exported
model with onnxruntime on two input sizes and compares it with PyTorch.
"""
import argparse

import torch

import mmfastervit  # noqa: F401
from mmfastervit import compat
from mmfastervit.models.fastervit import FasterViT


def export(model: torch.nn.Module, path: str, example: torch.Tensor, min_size: int,
           max_size: int) -> None:
    """Write ``model`` to ``path`` as ONNX, tracing it on ``example`` with the backbone's export
    paths switched on."""
    compat.export_onnx_with_dynamic_sizes(
        model, example, path,
        {0: ('batch', 1, 1024), 2: ('height', min_size, max_size), 3: ('width', min_size, max_size)},
        input_names=['images'], output_names=[f'stage{i}' for i in model.out_indices])


def verify(model: torch.nn.Module, path: str, sizes) -> float:
    """Largest difference relative to the output's range, over the given (B, H, W) inputs."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    worst = 0.0
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = model(x)
        outputs = session.run(None, {'images': x.numpy()})
        for out, ref in zip(outputs, expected):
            assert out.shape == tuple(ref.shape), (out.shape, ref.shape)
            error = float((torch.from_numpy(out) - ref).abs().max() / ref.abs().max())
            worst = max(worst, error)
        print(f'input {batch}x3x{height}x{width}: outputs {[o.shape for o in outputs]}, '
              f'max relative difference {worst:.2e}')
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='0')
    parser.add_argument('--checkpoint', help='official .pth.tar or converted backbone weights')
    parser.add_argument('--out', required=True)
    parser.add_argument('--min-size', type=int, default=128)
    parser.add_argument('--max-size', type=int, default=4096)
    parser.add_argument('--verify', action='store_true', help='compare with PyTorch (onnxruntime)')
    args = parser.parse_args()
    init_cfg = dict(type='Pretrained', checkpoint=args.checkpoint) if args.checkpoint else None
    model = FasterViT(arch=args.arch, init_cfg=init_cfg)
    model.init_weights()
    model.eval()
    example = torch.randn(2, 3, args.min_size + 96, args.min_size + 160)
    export(model, args.out, example, args.min_size, args.max_size)
    print(f'wrote {args.out}')
    if args.verify:
        sizes = [(1, args.min_size + 32, args.min_size + 200), (2, args.min_size + 300,
                                                               args.min_size + 75)]
        error = verify(model, args.out, sizes)
        if error > 1e-4:
            raise SystemExit(f'ONNX model differs from PyTorch: {error:.2e}')


if __name__ == '__main__':
    main()
