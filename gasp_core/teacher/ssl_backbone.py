"""The teacher's timm ViT backbone: built exactly as a loader builds it, its sin-cos position initialisation, the
initialisation of the heads' linear layers and the token embedding (with optional mask tokens) up to the blocks.
timm and torch are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def build_backbone(model: str, model_args: dict) -> torch.nn.Module:
    """The ViT exactly as a loader builds it (so its state dict loads strictly there)."""
    import timm

    vit = timm.create_model(model, pretrained=False, dynamic_img_size=True, num_classes=0, **model_args)
    for name in ("patch_embed", "blocks", "_pos_embed", "norm", "num_prefix_tokens", "embed_dim"):
        if not hasattr(vit, name):
            raise ValueError(f"teacher model {model!r} is not a timm VisionTransformer (it lacks {name})")
    return vit


def _sincos_init(vit) -> None:
    """Fixed 2D sin-cos values as the position embedding's starting point (faster to learn from than noise)."""
    import torch
    from timm.layers import build_sincos2d_pos_embed

    if vit.pos_embed is None:
        return
    gh, gw = vit.patch_embed.grid_size
    pe = build_sincos2d_pos_embed([gh, gw], dim=vit.embed_dim).reshape(gh * gw, vit.embed_dim)
    with torch.no_grad():
        n = vit.pos_embed.shape[1]
        vit.pos_embed[0, n - gh * gw :] = pe.to(vit.pos_embed)
        vit.pos_embed[0, : n - gh * gw] = 0.0


def _init_linear(module) -> None:
    import torch

    if isinstance(module, torch.nn.Linear):
        torch.nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


def embed_tokens(
    vit, x: torch.Tensor, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
) -> torch.Tensor:
    """timm's forward_features up to the blocks: patch embedding (patches where ``mask`` (B, N) is true replaced
    by ``mask_token``), prefix tokens and position embedding. Returns (B, prefix + N, C)."""
    import torch

    x = vit.patch_embed(x)
    if mask is not None:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        flat = torch.where(mask[..., None], mask_token.to(flat.dtype), flat)
        x = flat.view_as(x)
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
