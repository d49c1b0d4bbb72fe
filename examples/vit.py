"""A timm-style Vision Transformer with explicit softmax attention (random weights).

Used by the demo, the tests and the benchmarks. ``vit_small()`` has ViT-S/16's shape
(12 blocks, width 384, 6 heads, 197 tokens for a 224x224 image); ``vit_tiny()`` is a
fast stand-in for tests.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """timm's ``Attention``; ``fused=True`` calls ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:  # no `attn` local: only nopdb_lab.capture_attention sees the weights
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            return self.proj(x.transpose(1, 2).reshape(B, N, C))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, fused: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, fused)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class VisionTransformer(nn.Module):
    def __init__(
        self,
        img_size: int = 224,
        patch: int = 16,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        num_patches = (img_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, fused) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1000)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def vit_small() -> VisionTransformer:
    """ViT-S/16-sized: 12 blocks, width 384, 6 heads, 197 tokens."""
    torch.manual_seed(0)
    return VisionTransformer().eval()


def vit_tiny(fused: bool = False) -> VisionTransformer:
    """A 4-block, 4-head, 17-token ViT for fast tests (same weights fused or not)."""
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch=8, dim=32, depth=4, heads=4, fused=fused).eval()
