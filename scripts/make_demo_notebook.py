"""Write examples/demo.ipynb (the notebook the README's launch command opens).

Kept as a script so the notebook's cells live in reviewable Python; run it after editing.
"""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell
from notebooks import write_notebook

CELLS = [
    new_markdown_cell(
        "# nopdb-lab: look inside a model without editing it\n\n"
        "Open the **magnifier icon** (nopdb-lab captures) in the right sidebar: the "
        "*capture browser* lists every call captured below, live, with its arguments, "
        "locals, return value and stack. Click a capture to see tensor summaries; hover "
        "a value to copy the Python that reaches it or insert it into a new cell; click a "
        "stack frame to read its source."
    ),
    new_code_cell(
        "import torch\n"
        "from vit import Attention, vit_tiny  # a timm-style ViT next to this notebook\n"
        "\n"
        "import nopdb_lab as nopdb\n"
        "\n"
        "nopdb.store.enable()  # keep every capture (the JupyterLab extension does this too)\n"
        "torch.manual_seed(0)\n"
        "model = vit_tiny().eval()  # random weights: nothing is downloaded\n"
        "image = torch.rand(1, 3, 32, 32)  # 4x4 patches of 8x8 pixels + CLS = 17 tokens"
    ),
    new_markdown_cell(
        "## Capture every layer's attention\n"
        "`attn` is a local variable of `Attention.forward`: forward hooks cannot see it."
    ),
    new_code_cell(
        "with torch.no_grad(), nopdb.capture_calls(Attention.forward) as calls:\n"
        "    logits = model(image)\n"
        '[tuple(c.locals["attn"].shape) for c in calls]'
    ),
    new_markdown_cell(
        "## A breakpoint that does not stop\n"
        "Evaluate expressions, or execute code that changes the running frame."
    ),
    new_code_cell(
        'line = "x = (attn @ v).transpose(1, 2).reshape(B, N, C)"\n'
        "with torch.no_grad(), nopdb.breakpoint(function=Attention.forward, line=line) as bp:\n"
        '    entropy = bp.eval("-(attn * attn.clamp_min(1e-12).log()).sum(-1).mean().item()")\n'
        '    bp.exec("attn = torch.eye(attn.shape[-1]).expand_as(attn)")  # attend to self only\n'
        "    changed = model(image)\n"
        'print("mean attention entropy per layer:", [round(e, 3) for e in entropy])\n'
        'print("logits changed by", (changed - logits).abs().max().item())'
    ),
    new_markdown_cell(
        "## The same, from the gutter\n"
        "Run the next cell, then click just left of the line `attn = attn.softmax(dim=-1)` "
        "in it: a breakpoint appears (a ring until the cell has run, then a filled dot). "
        "Run the cell after it: each call is a hit in the capture browser with `attn` in "
        "its locals, and the marker counts the hits. Select the breakpoint in the "
        "sidebar's **Breakpoints** section to add a condition, expressions to evaluate, "
        "or code to execute such as `attn = attn * 3`. Or type "
        "`vit.Attention.forward` (or `torch.nn.functional`) in *Open source* there and "
        "set breakpoints in the read-only view. Breakpoints are saved with the notebook."
    ),
    new_code_cell(
        "class Probe(torch.nn.Module):\n"
        '    """A small attention block to try gutter breakpoints on."""\n'
        "\n"
        "    def __init__(self, dim=16):\n"
        "        super().__init__()\n"
        "        self.qkv = torch.nn.Linear(dim, 3 * dim)\n"
        "\n"
        "    def forward(self, x):\n"
        "        q, k, v = self.qkv(x).chunk(3, dim=-1)\n"
        "        attn = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5\n"
        "        attn = attn.softmax(dim=-1)\n"
        "        return attn @ v\n"
        "\n"
        "\n"
        "probe = Probe()"
    ),
    new_code_cell(
        "with torch.no_grad():\n    out = probe(torch.randn(1, 6, 16))\nout.sum().item()"
    ),
    new_markdown_cell(
        "## Every capture stays in the store\n"
        "Bounded by a byte budget (oldest evicted first, with a notice). The ids match the "
        "`#id` in the capture browser."
    ),
    new_code_cell("nopdb.store"),
    new_code_cell(
        'attn = nopdb.store[calls[0].id].locals["attn"]\n'
        "attn.shape, bool(attn.sum(-1).allclose(torch.tensor(1.0)))  # rows sum to 1"
    ),
]


def main() -> None:
    write_notebook(CELLS, "demo.ipynb")


if __name__ == "__main__":
    main()
