"""The GASP / UnO model: BEV encoder over past sweeps, implicit decoders queried at 4D points."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.models.bev_encoder import BEVEncoder
from gasp_core.models.config import ModelConfig, Variant
from gasp_core.models.implicit_decoder import ImplicitDecoder
from gasp_core.models.voxelizer import channels, grid_shape, unpack_bits, voxelize

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class GaspModel(nn.Module):
    """``forward(voxels, occupancy_q, ego_q, dino_q)`` -> dict of logits / features per query set.

    Queries are in metres and seconds in the t0 ego frame: occupancy and DINO ``(B, N, 4)`` = (x, y, z, t),
    ego path ``(B, N, 3)`` = (x, y, t). Heads a variant does not train are absent. ``voxels`` is the (B, C, H, W)
    grid, float or uint8, or the pre-training loader's bit-packed (B, C, H, ceil(W / 8)) uint8 (unpacked here, on
    the device).
    """

    def __init__(self, scene: SceneConfig, cfg: ModelConfig, variant: Variant, dino_dim: int = 0) -> None:
        super().__init__()
        self.scene, self.cfg, self.variant, self.dino_dim = scene, cfg, variant, dino_dim
        self.encoder = BEVEncoder(channels(scene, cfg.voxelizer), cfg.encoder)
        extent_xy = (scene.extent_m[1] - scene.extent_m[0], scene.extent_m[3] - scene.extent_m[2])
        w = cfg.encoder.width
        self.occupancy = ImplicitDecoder(w, 4, 1, cfg.decoder, extent_xy) if variant.occupancy else None
        self.ego = ImplicitDecoder(w, 3, 1, cfg.decoder, extent_xy) if variant.ego else None
        self.dino = ImplicitDecoder(w, 4, dino_dim, cfg.decoder, extent_xy) if variant.dino and dino_dim else None
        lo = torch.tensor([*scene.box_min, 0.0], dtype=torch.float32)
        span = torch.tensor([*(scene.box_max - scene.box_min), scene.horizon_s], dtype=torch.float32)
        self.register_buffer("q_lo", lo, persistent=False)
        self.register_buffer("q_span", span, persistent=False)
        # per-dimension scale of the DINO targets: 0 / 1 (the PCA feature as is) unless loss.dino_standardize;
        # query() undoes it, so its features are in PCA units either way
        self.register_buffer("dino_mean", torch.zeros(max(dino_dim, 1)))
        self.register_buffer("dino_std", torch.ones(max(dino_dim, 1)))

    def _norm(self, q: Tensor, dims: tuple[int, ...]) -> Tensor:
        return (q - self.q_lo[list(dims)]) / self.q_span[list(dims)]

    def forward(
        self,
        voxels: Tensor,
        occupancy_q: Tensor | None = None,
        ego_q: Tensor | None = None,
        dino_q: Tensor | None = None,
    ) -> dict[str, Tensor]:
        width = grid_shape(self.scene, self.cfg.voxelizer)[1]
        if voxels.dtype == torch.uint8 and voxels.shape[-1] != width:
            if voxels.shape[-1] != -(-width // 8):
                raise ValueError(
                    f"voxels of shape {tuple(voxels.shape)}: the grid is {width} cells wide, so the last axis holds "
                    f"{width} (unpacked) or {-(-width // 8)} (bit-packed) entries"
                )
            voxels = unpack_bits(voxels, width)
        bev = self.encoder(voxels)
        out = {"bev": bev}
        if self.occupancy is not None and occupancy_q is not None:
            out["occupancy_logits"] = self.occupancy_logits(bev, occupancy_q)
        if self.ego is not None and ego_q is not None:
            out["ego_logits"] = self.ego(bev, self._norm(ego_q, (0, 1, 3)))[..., 0]
        if self.dino is not None and dino_q is not None:
            out["dino"] = self.dino(bev, self._norm(dino_q, (0, 1, 2, 3)))
        return out

    def occupancy_logits(self, bev: Tensor, occupancy_q: Tensor) -> Tensor:
        """Occupancy logits ``(B, N)`` of the encoded ``bev`` at queries ``(B, N, 4)`` = (x, y, z, t), in metres and
        seconds of the t0 ego frame (normalised here, as in pre-training)."""
        return self.occupancy(bev, self._norm(occupancy_q, (0, 1, 2, 3)))[..., 0]

    @torch.inference_mode()
    def query(self, past_sweeps_t0: list[np.ndarray], xyzt: np.ndarray) -> dict[str, np.ndarray]:
        """The field at points ``xyzt`` (N, 4) given the past sweeps (oldest first, in the t0 frame):
        occupancy probability, ego-path probability at (x, y, t) and DINO features (in the target space)."""
        self.eval()
        device = self.q_lo.device
        vox = torch.from_numpy(voxelize(past_sweeps_t0, self.scene, self.cfg.voxelizer))[None].to(device)
        q = torch.as_tensor(np.asarray(xyzt, np.float32), device=device)[None]
        out = self(vox, q, q[..., [0, 1, 3]], q)
        res = {}
        if "occupancy_logits" in out:
            res["occupancy"] = torch.sigmoid(out["occupancy_logits"])[0].cpu().numpy()
        if "ego_logits" in out:
            res["ego"] = torch.sigmoid(out["ego_logits"])[0].cpu().numpy()
        if "dino" in out:
            res["dino"] = (out["dino"][0] * self.dino_std + self.dino_mean).cpu().numpy()
        return res

    def config_dict(self) -> dict:
        return {
            "scene": asdict(self.scene),
            "model": asdict(self.cfg),
            "variant": asdict(self.variant),
            "dino_dim": self.dino_dim,
        }

    def save_pretrained(self, out_dir: Path) -> None:
        """``model.safetensors`` + ``config.json`` in ``out_dir`` (each written atomically)."""
        from safetensors.torch import save_file

        from gasp_core.io import atomic_path, write_json_atomic

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        write_json_atomic(out_dir / CONFIG_FILE, self.config_dict())


def model_from_config(cfg: dict) -> GaspModel:
    return GaspModel(
        from_dict(SceneConfig, cfg["scene"], "scene"),
        from_dict(ModelConfig, cfg["model"], "model"),
        from_dict(Variant, cfg["variant"], "variant"),
        int(cfg["dino_dim"]),
    )


def load_pretrained(path: Path, device: str | torch.device = "cpu") -> GaspModel:
    """A pre-trained model from a folder written by ``save_pretrained`` (safetensors: no pickles)."""
    from safetensors.torch import load_file

    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} is missing: not a pre-trained GASP model folder")
    model = model_from_config(json.loads((path / CONFIG_FILE).read_text()))
    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=True)
    return model.to(device).eval()
