"""nopdb-lab demo: look inside a ViT's attention without editing its code.

Builds a ViT-S/16-sized model (random weights: nothing is downloaded), then
1. captures every layer's attention matrix from ``Attention.forward``'s locals,
2. sets a non-stopping breakpoint that rewrites ``attn`` inside every layer,
3. records a local with the Visualizer-style ``get_local``.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import nopdb_lab as nopdb  # noqa: E402
from examples.vit import Attention, vit_small  # noqa: E402


def main() -> None:
    model = vit_small()
    torch.manual_seed(0)
    image = torch.rand(1, 3, 224, 224)
    print(f"nopdb-lab {nopdb.__version__}, tracing backend: {nopdb.backend_name()}")

    # 1. capture every call of Attention.forward: arguments, locals, return value
    with torch.no_grad(), nopdb.capture_calls(Attention.forward) as calls:
        logits = model(image)
    print(f"\ncaptured {len(calls)} calls of {calls[0].qualname}:")
    for layer, call in enumerate(calls):
        attn = call.locals["attn"]  # (batch, heads, tokens, tokens), rows sum to 1
        cls_row = attn[0, :, 0, 1:].mean(0)  # CLS token -> patches, mean over heads
        top = cls_row.topk(3).indices.tolist()
        entropy = -(attn * attn.clamp_min(1e-12).log()).sum(-1).mean().item()
        print(
            f"  layer {layer:2d}: attn {tuple(attn.shape)}  mean entropy {entropy:.3f}  "
            f"CLS attends most to patches {top}"
        )

    # 2. a breakpoint that runs code inside every layer, without stopping
    line = "x = (attn @ v).transpose(1, 2).reshape(B, N, C)"
    with torch.no_grad(), nopdb.breakpoint(function=Attention.forward, line=line) as bp:
        bp.exec("attn = torch.eye(attn.shape[-1]).expand_as(attn)")  # attend only to self
        diag = bp.eval("attn.diagonal(dim1=-2, dim2=-1).mean().item()")
        edited = model(image)
    print(f"\nbreakpoint hit {bp.hit_count} times; diagonal of attn after exec: {diag[0]:.1f}")
    print(f"logits changed by the edit: max |delta| = {(edited - logits).abs().max():.4f}")

    # 3. the first call's stack, as a debugger would show it
    print("\nwhere layer 0's attention was computed:")
    calls[0].print_stack()


if __name__ == "__main__":
    main()
