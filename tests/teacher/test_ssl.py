"""The in-domain teacher trainer on tiny synthetic images: losses fall, the backbone loads strictly into timm, time
caps and seeds behave, and each objective's parts (MAE's hidden-patch targets, DINO's EMA teacher) are right."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file

from gasp_core.teacher import ssl, ssl_augment, ssl_backbone, ssl_config, ssl_dino, ssl_mae
from gasp_core.teacher.ssl import train_teacher
from gasp_core.teacher.ssl_config import TeacherTrainConfig

REPO = Path(__file__).resolve().parents[2]
TINY_ARGS = {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


def _blocks_images(n: int = 16, seed: int = 0) -> list[torch.Tensor]:
    """(3, 48, 64) images in [0, 1]: four coloured 16 px squares on black."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(n):
        x = torch.zeros(3, 48, 64)
        for _ in range(4):
            y0, x0 = int(torch.randint(0, 33, (1,), generator=g)), int(torch.randint(0, 49, (1,), generator=g))
            x[:, y0 : y0 + 16, x0 : x0 + 16] = torch.rand(3, 1, 1, generator=g)
        images.append(x)
    return images


def _cfg(objective: str, **kw) -> TeacherTrainConfig:
    base = dict(
        enabled=True,
        objective=objective,
        model="vit_tiny_patch16_224",
        model_args=dict(TINY_ARGS),
        image_side_px=64,
        steps=30,
        batch_size=8,
        lr=2e-3,
        warmup_steps=3,
        max_seconds=None,
        num_threads=1,
        log_every=5,
        decoder_dim=32,
        decoder_depth=1,
        decoder_heads=2,
        prototypes=64,
        head_hidden=64,
        head_bottleneck=32,
        local_crops=2,
        local_crop_patches=3,
    )
    return TeacherTrainConfig(**{**base, **kw})


def _load_backbone(out: Path) -> tuple[torch.nn.Module, dict]:
    meta = json.loads((out / ssl_config.META_FILE).read_text())
    vit = timm.create_model(meta["model"], pretrained=False, dynamic_img_size=True, num_classes=0, **meta["model_args"])
    vit.load_state_dict(load_file(str(out / ssl_config.WEIGHTS_FILE)), strict=True)
    return vit.eval(), meta


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return _blocks_images()


@pytest.fixture(scope="module", params=["mae", "dino"])
def trained(request, images, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"teacher_{request.param}")
    return request.param, train_teacher(images, _cfg(request.param), out_dir=out, progress=False), out


def test_loss_falls(trained):
    objective, metrics, out = trained
    curve = json.loads((out / ssl_config.META_FILE).read_text())["loss_curve"]
    assert metrics["steps_done"] == 30 and metrics["stopped_by"] == "steps" and len(curve) == 6
    assert all(math.isfinite(c["loss"]) for c in curve)
    assert curve[-1]["loss"] < 0.85 * curve[0]["loss"], curve
    if objective == "dino":
        assert metrics["ibot_final"] > 0  # the masked patch-token term is in the loss


def test_backbone_loads_strictly_into_timm_and_gives_the_patch_grid(trained):
    objective, _, out = trained
    names = [ssl_config.META_FILE, ssl_config.WEIGHTS_FILE, "README.md", "timing.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    vit, meta = _load_backbone(out)
    card = (out / "README.md").read_text()  # the model card: what was trained, on what, how to load it
    assert f"`{objective}` (self-supervised)" in card and "16 camera images" in card and "30 steps" in card
    assert 'load_file("models/teacher/model.safetensors")' in card
    assert meta["trained"] and meta["objective"] == objective and meta["max_side_px"] == 64
    assert meta["mean"] == list(ssl_config.IMAGENET_MEAN) and meta["std"] == list(ssl_config.IMAGENET_STD)
    assert meta["images"] == 16 and meta["steps_done"] == 30 and meta["stopped_by"] == "steps"
    assert meta["config"]["objective"] == objective and meta["model_args"]["patch_size"] == 8
    with torch.no_grad():
        for h, w in ((48, 64), (32, 40)):  # the training size and another one (dynamic position embedding)
            tokens = vit.forward_features(torch.rand(2, 3, h, w))
            assert tokens.shape == (2, vit.num_prefix_tokens + (h // 8) * (w // 8), 32)
            assert torch.isfinite(tokens).all()


@pytest.mark.parametrize("objective", ["mae", "dino"])
def test_training_changes_the_saved_backbone(objective, images, tmp_path):
    """Zero steps save the initial weights; a few steps must move every block (the encoder is trained, and DINO's
    saved EMA teacher follows the student)."""
    train_teacher(images, _cfg(objective, steps=0), out_dir=tmp_path / "init", progress=False)
    train_teacher(images, _cfg(objective, steps=4, warmup_steps=1), out_dir=tmp_path / "trained", progress=False)
    init = load_file(str(tmp_path / "init" / ssl_config.WEIGHTS_FILE))
    after = load_file(str(tmp_path / "trained" / ssl_config.WEIGHTS_FILE))
    assert init.keys() == after.keys()
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight", "norm.weight"):
        assert not torch.equal(init[name], after[name]), name


def test_max_seconds_stops_training_and_says_so(images, tmp_path):
    metrics = train_teacher(images, _cfg("mae", steps=2000, max_seconds=1.0), out_dir=tmp_path, progress=False)
    assert metrics["stopped_by"] == "max_seconds" and 1 <= metrics["steps_done"] < 2000
    meta = json.loads((tmp_path / ssl_config.META_FILE).read_text())
    assert meta["stopped_by"] == "max_seconds" and meta["steps_done"] == metrics["steps_done"]
    assert json.loads((tmp_path / "timing.json").read_text())["wall_seconds"] < 10.0
    assert (tmp_path / ssl_config.WEIGHTS_FILE).is_file()


@pytest.mark.parametrize("objective", ["mae", "dino"])
def test_same_seed_same_weights(objective, images, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train_teacher(images, _cfg(objective, steps=4, seed=seed), out_dir=tmp_path / name, progress=False)
        runs[name] = load_file(str(tmp_path / name / ssl_config.WEIGHTS_FILE))
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])
    # the same seed writes the same folder byte for byte (DVC hashes it; the teacher's id hashes its weights file),
    # the wall time aside, which goes to timing.json (.dvcignore)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.name != "timing.json")
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_mae_scores_the_hidden_patches_against_their_own_pixels():
    """Hidden patches hold 1, visible ones 0 and the decoder predicts 0: the loss is exactly 1 (it would be 0 if the
    targets were the visible pixels, or the visible patches were scored)."""
    cfg = _cfg("mae")
    torch.manual_seed(0)
    vit = ssl_backbone.build_backbone(cfg.model, {**TINY_ARGS, "img_size": [48, 64]})
    dec = ssl_mae._mae_decoder(cfg, vit.embed_dim, (6, 8), 8, vit.num_prefix_tokens)
    torch.nn.init.zeros_(dec["pred"].weight)
    torch.nn.init.zeros_(dec["pred"].bias)
    ids_keep, mask = ssl_augment.random_masks(np.random.default_rng(0), 2, 48, 0.75)
    assert mask.sum(1).tolist() == [36, 36] and (np.take_along_axis(mask, ids_keep, 1) == 0).all()
    patches = torch.from_numpy(mask)[..., None].expand(2, 48, 8 * 8 * 3)
    images = patches.reshape(2, 6, 8, 8, 8, 3).permute(0, 5, 1, 3, 2, 4).reshape(2, 3, 48, 64).contiguous()
    assert torch.equal(ssl_mae.patchify(images, 8), patches)
    loss = ssl_mae.mae_loss(vit, dec, images, torch.from_numpy(ids_keep), torch.from_numpy(mask), 8, norm_pix=False)
    assert loss.item() == pytest.approx(1.0)


def test_mae_encoder_sees_only_the_visible_patches():
    """Changing the pixels of a hidden patch changes nothing the encoder's blocks see (only the loss's target)."""
    cfg = _cfg("mae")
    torch.manual_seed(0)
    vit = ssl_backbone.build_backbone(cfg.model, {**TINY_ARGS, "img_size": [48, 64]})
    dec = ssl_mae._mae_decoder(cfg, vit.embed_dim, (6, 8), 8, vit.num_prefix_tokens)
    ids_keep, mask = ssl_augment.random_masks(np.random.default_rng(1), 1, 48, 0.75)
    seen = []
    vit.blocks.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().clone()))
    x = torch.rand(1, 3, 48, 64)
    for hidden in (None, *np.flatnonzero(mask[0])[:3]):
        y = x.clone()
        if hidden is not None:
            r, c = divmod(int(hidden), 8)
            y[:, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 1.0
        ssl_mae.mae_loss(vit, dec, y, torch.from_numpy(ids_keep), torch.from_numpy(mask), 8, norm_pix=True)
    assert seen[0].shape == (1, vit.num_prefix_tokens + 12, 32)  # the prefix and the 12 visible patches only
    assert all(torch.equal(seen[0], other) for other in seen[1:])


def test_dino_saves_the_ema_teacher(images, tmp_path):
    """With momentum 1 the teacher never moves: the saved backbone is the initial one, whatever the student did."""
    train_teacher(images, _cfg("dino", steps=0), out_dir=tmp_path / "init", progress=False)
    train_teacher(images, _cfg("dino", steps=4, warmup_steps=1, ema=1.0), out_dir=tmp_path / "frozen", progress=False)
    init = load_file(str(tmp_path / "init" / ssl_config.WEIGHTS_FILE))
    frozen = load_file(str(tmp_path / "frozen" / ssl_config.WEIGHTS_FILE))
    assert all(torch.equal(init[k], frozen[k]) for k in init)


def test_masked_tokens_are_replaced_before_the_position_embedding():
    torch.manual_seed(0)
    vit = ssl_backbone.build_backbone("vit_tiny_patch16_224", {**TINY_ARGS, "img_size": [48, 64]})
    token = torch.randn(1, 1, 32)
    mask = torch.zeros(2, 48, dtype=torch.bool)
    mask[0, [3, 17]] = True
    x = torch.rand(2, 3, 48, 64)
    plain, masked = ssl_backbone.embed_tokens(vit, x), ssl_backbone.embed_tokens(vit, x, mask, token)
    n = vit.num_prefix_tokens
    assert not vit.no_embed_class  # the position embedding has entries for the prefix tokens too
    expected = token[0, 0] + vit.pos_embed[0, n:][[3, 17]]
    assert torch.allclose(masked[0, n + 3], expected[0]) and torch.allclose(masked[0, n + 17], expected[1])
    keep = ~mask
    assert torch.equal(masked[:, n:][keep], plain[:, n:][keep]) and torch.equal(masked[:, :n], plain[:, :n])


def test_ema_update_moves_the_teacher_a_little_towards_the_student():
    teacher, student = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(1.0)
        for p in student.parameters():
            p.fill_(0.0)
    ssl_dino.ema_update(teacher, student, 0.9)
    assert all(torch.allclose(p, torch.full_like(p, 0.9)) for p in teacher.parameters())
    assert all((p == 0).all() for p in student.parameters())
    assert ssl._schedule(_cfg("dino", ema=0.99), 0, 0.0)[1] == pytest.approx(0.99)
    assert ssl._schedule(_cfg("dino", ema=0.99), 29, 1.0)[1] == pytest.approx(1.0)


def test_dino_targets_are_centred_and_sharpened():
    cfg = _cfg("dino", teacher_temp=0.04)
    scores = torch.tensor([[0.5, 0.4, 0.1], [0.5, 0.1, 0.4], [0.5, 0.3, 0.3]])
    for centering in ("ema", "sinkhorn"):
        center = scores.mean(0, keepdim=True).clone()
        probs = ssl_dino.teacher_targets(scores, center, replace(cfg, centering=centering))
        assert torch.allclose(probs.sum(1), torch.ones(3), atol=0.02)
        assert probs[0, 1] > 0.75 and probs[1, 2] > 0.75  # each row's own preference is sharpened
        if centering == "ema":
            assert probs[:, 0].max() < 0.5  # the column every row shares is centred away
            assert torch.allclose(center, scores.mean(0, keepdim=True))  # the batch mean is the centre's fixed point
        else:
            assert torch.allclose(probs.sum(0), torch.ones(3), atol=0.05)  # every prototype gets an equal share


def test_crops_stay_inside_each_image():
    sizes = np.array([[48, 64], [24, 32]])  # whole-image crops: the image's own corner of the canvas
    theta = ssl_augment.crop_thetas(np.random.default_rng(0), sizes, (48, 64), (48, 64), (1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(np.abs(theta[:, 0, 0]), [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(theta[:, 1, 1], [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(theta[:, :, 2], [[0.0, 0.0], [-0.5, -0.5]], atol=1e-6)
    sizes = np.array([[48, 64], [32, 64]])
    theta = ssl_augment.crop_thetas(np.random.default_rng(1), np.repeat(sizes, 50, 0), (48, 64), (16, 16), (0.05, 0.4))
    for axis, limit in ((0, 64 / 64), (1, np.repeat([48 / 48, 32 / 48], 50))):
        lo = theta[:, axis, 2] - np.abs(theta[:, axis, axis])
        hi = theta[:, axis, 2] + np.abs(theta[:, axis, axis])
        assert (lo >= -1 - 1e-6).all() and (hi <= -1 + 2 * limit + 1e-6).all()


def test_preload_resizes_like_the_dino_teacher(tmp_path):
    from PIL import Image

    path = tmp_path / "img.jpg"
    Image.fromarray((np.random.default_rng(0).random((168, 224, 3)) * 255).astype(np.uint8)).save(path)
    canvas, sizes, hw = ssl_augment.preload_images([path, torch.rand(3, 40, 60)], side=112, patch=8)
    assert hw == (80, 112) and sizes.tolist() == [[80, 112], [40, 64]] and canvas.dtype == torch.uint8
    assert canvas.shape == (2, 3, 80, 112) and (canvas[1, :, 40:] == 0).all()


def test_disabled_stage_writes_an_untrained_marker_without_torch(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"teacher": json.loads(json.dumps(asdict(TeacherTrainConfig(enabled=False))))}))
    out, metrics = tmp_path / "teacher", tmp_path / "metrics.json"
    (out / "old").mkdir(parents=True)
    code = (
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path('stages/teacher.py', run_name='__main__'); "
        "assert 'torch' not in sys.modules, 'the disabled stage imported torch'"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "stages/teacher.py",
            "--params",
            str(params),
            "--store",
            "nowhere",
            "--out",
            str(out),
            "--metrics",
            str(metrics),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert json.loads((out / ssl_config.META_FILE).read_text()) == {"trained": False}
    assert sorted(p.name for p in out.iterdir()) == sorted([ssl_config.META_FILE, "README.md"])
    assert "no ViT was trained" in (out / "README.md").read_text()
    assert json.loads(metrics.read_text()) == {"trained": False}
