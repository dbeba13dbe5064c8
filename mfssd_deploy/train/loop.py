"""The training loop: one script for CPU, one GPU, and several GPUs under torchrun (DDP)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from mfssd_deploy.checkpoint import load_state, read_checkpoint, save_checkpoint
from mfssd_deploy.config import ModelConfig, make_config
from mfssd_deploy.data.sources import Source, open_dataset
from mfssd_deploy.data.torch_dataset import DetectionDataset, collate
from mfssd_deploy.data.transforms import train_transforms
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.fileio import atomic_path, fresh_run_dir, sha256_file
from mfssd_deploy.geometry.boxes import match
from mfssd_deploy.geometry.priors import priors_tensor
from mfssd_deploy.models import build_from_config
from mfssd_deploy.train.loss import multibox_loss
from mfssd_deploy.train.schedule import PAPER_MILESTONES, PAPER_WARMUP, lr_factor
from mfssd_deploy.train.sparsity import add_l1_subgradient

log = logging.getLogger("mfssd_deploy.train")


@dataclass
class TrainOptions:
    data: str
    out: str | None = None  # None: runs/train, or the first free runs/trainN
    variant: str = "mfssd_bn"
    width: float = 1.0
    train_split: str = "train"
    val_split: str | None = "val"
    epochs: int = 24
    batch: int = 16
    lr: float | None = None  # default: the paper's 0.4 at batch 256, scaled linearly
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = PAPER_WARMUP
    milestones: tuple[float, ...] = PAPER_MILESTONES
    sparsity: float = 0.0
    clip_grad_norm: float | None = None  # max L2 norm of all gradients together (None: no clipping)
    zoom_out: float = 4.0
    workers: int = 2
    amp: str = "auto"  # auto | off | bf16 | fp16
    channels_last: bool | None = None  # default: on for CPU
    device: str = "auto"
    resume: str | None = None
    finetune: str | None = None
    new_head: bool = False  # with finetune: keep the backbone, a fresh class head for the data's classes
    classes: str | None = None  # a VOC layout's class list ('voc' or a file); see data.sources.voc_class_names
    format: str | None = None  # the dataset layout (data.sources.LAYOUTS); None: found from the folder
    init_vgg: str | None = None
    eval_every: int = 1
    eval_images: int | None = None
    max_steps: int | None = None  # stop early (tests, smoke runs)
    seed: int = 0
    progress: bool = True
    extra_meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(opt: TrainOptions, d: Dist) -> torch.device:
    name = opt.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise MfssdError("--device cuda but no CUDA device is visible; use --device cpu")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device(name)


def _amp_dtype(opt: TrainOptions, device: torch.device) -> torch.dtype | None:
    mode = opt.amp
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda":
            return torch.float16
        cpu_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return torch.bfloat16 if cpu_bf16 else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def _model_and_config(opt: TrainOptions, source: Source) -> tuple[nn.Module, ModelConfig, dict[str, Any] | None]:
    """Fresh model from variant/width, or the structure + weights of --finetune / --resume.

    A checkpoint's classes are matched to the data's by name (the labels are renumbered to its order);
    other names are refused, unless --new-head, which keeps every layer but the class head."""
    start = opt.finetune or opt.resume
    if start:
        ckpt = read_checkpoint(start)
        cfg = ModelConfig.from_dict(ckpt["config"])
        if opt.new_head and set(cfg.class_names) != set(source.class_names):
            return _new_head(cfg, ckpt, source, start), replace(
                cfg, num_classes=source.num_classes, class_names=source.class_names), ckpt  # fmt: skip
        if opt.new_head:  # the same names: nothing to re-initialise
            log.warning("--new-head: %s already detects the data's classes; its class head is kept", start)
        elif set(cfg.class_names) != set(source.class_names):
            hint = " (or --finetune it with --new-head for a fresh class head)" if opt.finetune else ""
            try:
                source.aligned_to(cfg.class_names, start)
            except MfssdError as exc:
                raise MfssdError(f"{exc}{hint}") from None
        model = build_from_config(cfg)
        load_state(model, ckpt["state_dict"], source=start)
        return model, cfg, ckpt
    cfg = make_config(opt.variant, source.num_classes, source.class_names, opt.width)
    model = build_from_config(cfg)
    if opt.init_vgg:
        from mfssd_deploy.pretrained import load_vgg16_imagenet

        load_vgg16_imagenet(model, opt.init_vgg)
    return model, cfg, None


def _new_head(cfg: ModelConfig, ckpt: dict[str, Any], source: Source, start: str) -> nn.Module:
    """The checkpoint's model with a freshly initialised class head (head.conf.*) for the data's classes:
    every other tensor (backbone, fusion, box head) is kept."""
    model = build_from_config(replace(cfg, num_classes=source.num_classes, class_names=source.class_names))
    fresh = model.state_dict()
    kept = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("head.conf")}
    load_state(model, {**kept, **{k: v for k, v in fresh.items() if k.startswith("head.conf")}}, source=start)
    log.warning("--new-head: kept the backbone, fusion and box head of %s; the class head is new, for %d classes "
                "(%s) instead of %s", start, source.num_classes - 1, ", ".join(source.class_names),
                ", ".join(cfg.class_names))  # fmt: skip
    return model


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]


@dataclass
class _Run:
    """Everything the epochs share: built once by the setup steps, then read (and `step`, `best_map`,
    `history` advanced) by the epoch steps."""

    opt: TrainOptions
    d: Dist
    device: torch.device
    cfg: ModelConfig
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    channels_last: bool
    amp_dtype: torch.dtype | None
    loader: DataLoader[Any]
    sampler: Any
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    base_lr: float
    total_steps: int
    priors: torch.Tensor
    val_src: Source | None
    out: Path
    meta_base: dict[str, Any]
    pruning: dict[str, Any] | None
    t_start: float = 0.0
    step: int = 0
    best_map: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)


def train(opt: TrainOptions) -> dict[str, Any]:
    """Train; writes OUT/last.pt (with optimizer state, for --resume), OUT/best.pt and OUT/log.jsonl."""
    run, start_epoch = _setup(opt)
    run.t_start = time.time()
    for epoch in range(start_epoch, opt.epochs):
        record, stop = _train_epoch(run, epoch)
        if run.d.main and run.val_src is not None and _evaluates(opt, epoch, stop):
            _evaluate_epoch(run, epoch, record)
        run.history.append(record)
        if run.d.main:
            _save_epoch(run, epoch, record)
        if stop:
            break
    if run.d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return {"history": run.history, "best_map": run.best_map, "out": str(run.out),
            "train_time_s": time.time() - run.t_start}  # fmt: skip


def _setup(opt: TrainOptions) -> tuple[_Run, int]:
    """Seed, processes, device, data, model, loader, optimizer, and the state of a resumed run; returns the
    run and the first epoch to train."""
    torch.manual_seed(opt.seed)
    d = _setup_distributed(opt.device)
    device = _resolve_device(opt, d)
    if opt.new_head and not opt.finetune:
        raise MfssdError("--new-head re-initialises the class head of a --finetune checkpoint; add --finetune X.pt")
    out = Path(opt.out) if opt.out else (Path(opt.resume).parent if opt.resume else fresh_run_dir("runs/train"))
    if d.main and not (opt.resume and Path(opt.resume).parent.resolve() == out.resolve()):
        _refuse_existing_run(out)
    train_src = open_dataset(opt.data, opt.train_split, opt.classes, opt.format).require_content("training")
    val_src = None
    if opt.val_split:
        val_src = open_dataset(opt.data, opt.val_split, opt.classes, opt.format).require_content("validation")
    model, cfg, start_ckpt = _model_and_config(opt, train_src)
    train_src = train_src.aligned_to(cfg.class_names, "the model")  # labels in the model's order, by name
    if val_src is not None:
        val_src = val_src.aligned_to(cfg.class_names, "the model")  # refused now, not after an epoch
    channels_last = opt.channels_last if opt.channels_last is not None else device.type == "cpu"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype = _amp_dtype(opt, device)
    dataset, sampler, loader = _data_loader(opt, train_src, cfg, d, device)
    base_lr = opt.lr if opt.lr is not None else 0.4 * opt.batch / 256
    optimizer = torch.optim.SGD(_param_groups(model, opt.weight_decay), lr=base_lr, momentum=opt.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")
    step, start_epoch, best_map, history = _resume_state(opt, start_ckpt, optimizer)
    net: nn.Module = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if device.type == "cuda" else None)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        log.info("run folder: %s", out)
    data_sha = sha256_file(train_src.coco_json) if train_src.coco_json else None
    meta_base = {
        "data": {"path": str(opt.data), "split": opt.train_split, "images": len(dataset), "sha256": data_sha},
        "train_args": {k: v for k, v in asdict(opt).items() if k not in ("extra_meta",)},
        **opt.extra_meta,
    }
    # A fine-tuned pruned model keeps the record of its pruning in every checkpoint it produces.
    pruning = start_ckpt.get("pruning") if start_ckpt is not None else None
    run = _Run(opt=opt, d=d, device=device, cfg=cfg, model=model, net=net, channels_last=channels_last,
               amp_dtype=amp_dtype, loader=loader, sampler=sampler, optimizer=optimizer, scaler=scaler,
               base_lr=base_lr, total_steps=len(loader) * opt.epochs, priors=priors_tensor(cfg.priors, device),
               val_src=val_src, out=out, meta_base=meta_base, pruning=pruning, step=step, best_map=best_map,
               history=history)  # fmt: skip
    return run, start_epoch


RUN_FILES = ("last.pt", "best.pt", "log.jsonl")


def _refuse_existing_run(out: Path) -> None:
    """A folder that already holds a run is never written over: --resume continues it, else pick another."""
    held = [n for n in RUN_FILES if (out / n).exists()]
    if held:
        raise MfssdError(
            f"{out} already holds a run ({', '.join(held)}); give a new --out, or --resume {out / 'last.pt'}"
        )


def _data_loader(opt: TrainOptions, source: Source, cfg: ModelConfig, d: Dist,
                 device: torch.device) -> tuple[DetectionDataset, Any, DataLoader[Any]]:  # fmt: skip
    """The augmented training set, its sampler (one shard per process under DDP) and loader; each
    process loads its share of the global batch."""
    transforms = train_transforms(cfg.square_side("training"), cfg.mean, cfg.std, opt.zoom_out)
    dataset = DetectionDataset(source, transforms, cfg.color)
    per_rank_batch = max(1, opt.batch // d.world)
    sampler = (
        DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, seed=opt.seed, drop_last=True)
        if d.world > 1
        else RandomSampler(dataset, generator=torch.Generator().manual_seed(opt.seed))
    )
    loader = DataLoader(
        dataset,
        per_rank_batch,
        sampler=sampler,
        num_workers=opt.workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=opt.workers > 0,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise MfssdError(f"{len(dataset)} training images is fewer than one batch of {per_rank_batch}; lower --batch")
    return dataset, sampler, loader


def _resume_state(opt: TrainOptions, start_ckpt: dict[str, Any] | None,
                  optimizer: torch.optim.Optimizer) -> tuple[int, int, float, list[dict[str, Any]]]:  # fmt: skip
    """(step, first epoch, best mAP, history): zeros for a fresh run; with --resume, where last.pt stopped
    (the optimizer state loaded, so the schedule continues)."""
    if not (opt.resume and start_ckpt is not None):
        return 0, 0, -1.0, []
    state = start_ckpt.get("train_state")
    if not isinstance(state, dict):
        raise MfssdError(f"{opt.resume} has no training state to resume from (use --finetune to start from it)")
    optimizer.load_state_dict(state["optimizer"])
    history = list(start_ckpt.get("meta", {}).get("history", []))
    return int(state["step"]), int(state["epoch"]), float(state["best_map"]), history


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, Any], bool]:
    """One pass over the loader (or up to --max-steps); returns the epoch's record and whether to stop."""
    from tqdm import tqdm

    opt, d = run.opt, run.d
    if isinstance(run.sampler, DistributedSampler):
        run.sampler.set_epoch(epoch)
    run.net.train()
    sums = {"loss": 0.0, "loc": 0.0, "conf": 0.0}
    seen, t_epoch = 0, time.time()
    stop = False
    bar = tqdm(
        run.loader,
        desc=f"epoch {epoch + 1}/{opt.epochs}",
        disable=None if (opt.progress and d.main) else True,
        leave=True,
    )
    for images, targets in bar:
        losses = _train_step(run, images, targets)
        n = images.shape[0]
        seen += n
        for k, v in zip(("loss", "loc", "conf"), losses, strict=True):
            sums[k] += float(v.detach()) * n
        rate = seen * d.world / max(time.time() - t_epoch, 1e-9)
        bar.set_postfix(
            loss=f"{sums['loss'] / seen:.3f}",
            img_s=f"{rate:.1f}",
            lr=f"{run.optimizer.param_groups[0]['lr']:.4g}",
        )
        if opt.max_steps is not None and run.step >= opt.max_steps:
            stop = True
            break
    bar.close()
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": run.step,
        **{k: v / max(seen, 1) for k, v in sums.items()},
        "images_per_s": seen * d.world / max(time.time() - t_epoch, 1e-9),
        "elapsed_s": time.time() - run.t_start,
    }
    if d.main:  # one line per epoch: what a log file shows when the progress bar is off (no TTY)
        log.info("epoch %d/%d: loss %.3f (loc %.3f, conf %.3f), %.1f img/s, lr %.4g", epoch + 1, opt.epochs,
                 record["loss"], record["loc"], record["conf"], record["images_per_s"],
                 run.optimizer.param_groups[0]["lr"])  # fmt: skip
    return record, stop


def _train_step(run: _Run, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """One optimizer step on a batch (scheduled LR, matching, mixed precision, L1 on the BN gammas);
    returns (loss, loc loss, conf loss)."""
    opt, device = run.opt, run.device
    for g in run.optimizer.param_groups:
        g["lr"] = run.base_lr * lr_factor(run.step, run.total_steps, opt.warmup, opt.milestones)
    images = images.to(device, non_blocking=True)
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    loc_t, conf_t = match(
        [t["boxes"].to(device) for t in targets],
        [t["labels"].to(device) for t in targets],
        run.priors,
        variances=run.cfg.priors.variances,
    )
    with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
        loc, conf = run.net(images)
    loss_l, loss_c = multibox_loss(loc, conf, loc_t, conf_t)
    loss = loss_l + loss_c
    if not torch.isfinite(loss):
        raise MfssdError(f"loss became {loss.item()} at step {run.step}: lower --lr (now {run.base_lr:g})")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if opt.sparsity > 0 or opt.clip_grad_norm is not None:
        run.scaler.unscale_(run.optimizer)
    if opt.sparsity > 0:
        add_l1_subgradient(run.model, opt.sparsity)
    if opt.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), opt.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.step += 1
    return loss, loss_l, loss_c


def _evaluates(opt: TrainOptions, epoch: int, stop: bool) -> bool:
    """Every --eval-every epochs, and always after the last one."""
    last_epoch = stop or epoch + 1 == opt.epochs
    return (epoch + 1) % max(1, opt.eval_every) == 0 or last_epoch


def _evaluate_epoch(run: _Run, epoch: int, record: dict[str, Any]) -> None:
    """Validation mAP into the epoch's record (and, under --sparsity, the gamma summary and histogram)."""
    from mfssd_deploy.evaluation.result import headline
    from mfssd_deploy.evaluation.runner import evaluate, torch_predictor

    opt = run.opt
    assert run.val_src is not None
    pred = torch_predictor(run.model, str(run.device), channels_last=run.channels_last)
    res = evaluate(pred, run.val_src, class_names=run.cfg.class_names, max_images=opt.eval_images,
                   progress=opt.progress)  # fmt: skip
    record["val"] = {"voc07_map": res["voc07_map"], "coco": res.get("coco", {})}
    if opt.sparsity > 0:  # let users watch the gammas go to zero
        from mfssd_deploy.train.sparsity import gamma_summary, plot_gammas

        record["gammas"] = gamma_summary(run.model)
        plot_gammas(run.model, str(run.out / f"gammas_epoch{epoch + 1:03d}.png"),
                    f"epoch {epoch + 1}, sparsity {opt.sparsity:g}")  # fmt: skip
    log.info("epoch %d: val %s", epoch + 1, headline(res))


def _save_epoch(run: _Run, epoch: int, record: dict[str, Any]) -> None:
    """last.pt every epoch, best.pt when the validation mAP improved, and log.jsonl (main process only)."""
    opt, out = run.opt, run.out
    _save(out, run.model, run.cfg, opt, run.optimizer, run.step, epoch + 1, run.history, run.meta_base, run.t_start,
          run.best_map, run.pruning)  # fmt: skip
    vmap = record.get("val", {}).get("voc07_map", float("nan"))
    if not math.isnan(vmap) and vmap > run.best_map:
        run.best_map = vmap
        meta = {
            **run.meta_base,
            "epoch": epoch + 1,
            "step": run.step,
            "metrics": record.get("val", {}),
            "train_time_s": time.time() - run.t_start,
        }
        save_checkpoint(out / "best.pt", run.model, config=run.cfg, meta=meta, pruning=run.pruning)
    with atomic_path(out / "log.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(h) + "\n" for h in run.history))


def _save(
    out: Path,
    model: nn.Module,
    cfg: ModelConfig,
    opt: TrainOptions,
    optimizer: torch.optim.Optimizer,
    step: int,
    epoch: int,
    history: list[dict[str, Any]],
    meta_base: dict[str, Any],
    t_start: float,
    best_map: float,
    pruning: dict[str, Any] | None,
) -> None:
    """last.pt carries the optimizer state and step, so --resume continues the schedule; best.pt is weights only."""
    meta = {
        **meta_base,
        "epoch": epoch,
        "step": step,
        "history": history,
        "train_time_s": time.time() - t_start,
    }
    state = {"optimizer": optimizer.state_dict(), "step": step, "epoch": epoch, "best_map": best_map}
    save_checkpoint(out / "last.pt", model, config=cfg, meta=meta, extra={"train_state": state}, pruning=pruning)
