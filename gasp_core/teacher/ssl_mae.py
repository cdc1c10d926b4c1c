"""The ``mae`` objective: a light timm-block decoder that predicts the (normalised) pixels of the patches hidden
from the encoder, and its masked reconstruction loss. torch and timm are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gasp_core.teacher.ssl_backbone import _init_linear, embed_tokens

if TYPE_CHECKING:
    import torch

    from gasp_core.teacher.ssl_config import TeacherTrainConfig


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, p * p * 3), patches in the ViT's token order (row-major)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden patches only (``mask`` (B, N) 1 where hidden)."""
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def _mae_decoder(cfg: TeacherTrainConfig, embed_dim: int, grid: tuple[int, int], patch: int, prefix: int):
    import torch
    from timm.layers import build_sincos2d_pos_embed
    from timm.models.vision_transformer import Block

    nn = torch.nn
    dec = nn.ModuleDict(
        {
            "embed": nn.Linear(embed_dim, cfg.decoder_dim),
            "blocks": nn.Sequential(
                *[
                    Block(cfg.decoder_dim, cfg.decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                    for _ in range(cfg.decoder_depth)
                ]
            ),
            "norm": nn.LayerNorm(cfg.decoder_dim),
            "pred": nn.Linear(cfg.decoder_dim, patch * patch * 3),
        }
    )
    dec.apply(_init_linear)
    dec.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
    nn.init.normal_(dec.mask_token, std=0.02)
    pos = build_sincos2d_pos_embed(list(grid), dim=cfg.decoder_dim).reshape(1, grid[0] * grid[1], cfg.decoder_dim)
    dec.register_buffer("pos", pos, persistent=False)
    dec.prefix = prefix
    return dec


def mae_loss(
    vit, dec, images: torch.Tensor, ids_keep: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix: bool
) -> torch.Tensor:
    """MAE on normalised (B, 3, H, W) images: encode the visible patches ``ids_keep``, decode all, score the hidden."""
    import torch

    x = embed_tokens(vit, images)
    pre, tokens = x[:, : vit.num_prefix_tokens], x[:, vit.num_prefix_tokens :]
    c = tokens.shape[-1]
    visible = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, c))
    z = dec["embed"](vit.norm(vit.blocks(torch.cat([pre, visible], dim=1))))
    b, n = mask.shape
    full = dec.mask_token.to(z.dtype).expand(b, n, -1).clone()
    full.scatter_(1, ids_keep[..., None].expand(-1, -1, z.shape[-1]), z[:, vit.num_prefix_tokens :])
    y = torch.cat([z[:, : vit.num_prefix_tokens], full + dec.pos.to(z.dtype)], dim=1)
    pred = dec["pred"](dec["norm"](dec["blocks"](y)))[:, vit.num_prefix_tokens :].float()
    target = patchify(images, patch)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    return masked_mse(pred, target, mask)
