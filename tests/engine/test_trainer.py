"""The training loop: learning, determinism, exact resume, fine-tuning, guards and errors."""

import logging
import math

import pytest
import torch

import detforge
from detforge.assign import TaskAlignedAssigner
from detforge.data import build_dataloader
from detforge.device import cpu_has_bf16
from detforge.engine.callbacks import Callback
from detforge.engine.results import ResultsLog
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer
from detforge.errors import ConfigError, TrainingDivergedError
from detforge.io.weights import read_weights
from detforge.losses import DetectionLoss


def run(settings, **changes):
    return Trainer(make_train_config({**settings, **changes})).train()


class FrozenAssigner(torch.nn.Module):
    """Repeats its first assignment, so the loss before and after a step compares like with like
    (TAL re-assigns positives from the predictions, which moves the loss's normalizer)."""

    def __init__(self):
        super().__init__()
        self.inner, self.first = TaskAlignedAssigner(), None

    def forward(self, *args):
        self.first = self.first or self.inner(*args)
        return self.first


def test_optimizer_steps_lower_the_loss_on_a_fixed_batch(tiny_data, tiny_model):
    batch = next(iter(build_dataloader(tiny_data, "train", imgsz=64, batch_size=8, augment=False, workers=0,
                                       progress=False)))
    images = batch["img"].float() / 255
    targets = (batch["boxes"], batch["cls"], batch["batch_idx"])

    torch.manual_seed(0)
    model = detforge.create_model(tiny_model).train()
    loss_fn = DetectionLoss(2, assigner=FrozenAssigner())
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before, _ = loss_fn(model(images), *targets)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after, _ = loss_fn(model(images), *targets)
    assert after < before


def test_run_writes_everything_and_is_deterministic(settings):
    first = run(settings, plots=True)
    folder = first.run_dir
    for name in ("weights/best.safetensors", "weights/last.safetensors", "weights/last_state.safetensors",
                 "results.csv", "results.png", "train_batch0.png", "PR_curve.png", "config.json"):
        assert (folder / name).is_file(), name
    assert len((folder / "results.csv").read_text().splitlines()) == 1 + 2
    assert detforge.load(first.best).num_classes == 2
    second = run(settings)
    assert second.run_dir != folder  # a new folder, not an overwrite
    assert first.losses == second.losses and len(first.losses) == 2
    a, b = read_weights(first.last)[0], read_weights(second.last)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_matches_an_uninterrupted_run(settings, monkeypatch):
    full = run(settings, epochs=3, name="full")

    original = Trainer._end_epoch

    def stop_after_first_epoch(self, epoch, losses):
        metrics = original(self, epoch, losses)
        if epoch == 0:
            raise KeyboardInterrupt
        return metrics

    monkeypatch.setattr(Trainer, "_end_epoch", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(settings, epochs=3, name="split")
    monkeypatch.setattr(Trainer, "_end_epoch", original)
    resumed = Trainer.resume(full.run_dir.with_name("split")).train()
    assert resumed.losses == full.losses
    a, b = read_weights(full.last)[0], read_weights(resumed.last)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len((resumed.run_dir / "results.csv").read_text().splitlines()) == 1 + 3
    times = [row["time"] for row in ResultsLog(resumed.run_dir / "results.csv").rows()]
    assert 0 < times[0] < times[1] < times[2] == pytest.approx(resumed.train_s, rel=1e-5)  # csv keeps 6 digits


def test_finetune_reinitializes_head_for_other_classes_and_freezes(settings, tiny_data, tmp_path, caplog):
    base = read_weights(run(settings, epochs=1, name="base").best)[0]
    # the same architecture trained for 5 classes: everything but the class branch fits the 2-class data
    five = detforge.create_model(settings["model"], num_classes=5)
    five.load_state_dict({k: v for k, v in base.items() if not k.startswith("head.cls")}, strict=False)
    detforge.save_weights(five, tmp_path / "five.safetensors")
    with caplog.at_level(logging.INFO):
        tuned = run(settings, epochs=1, name="tuned", weights=str(tmp_path / "five.safetensors"), freeze="backbone")
    assert "head re-initialized for 2 classes (the weights were trained for 5)" in caplog.text
    source, result = five.state_dict(), read_weights(tuned.last)[0]
    assert all(torch.equal(source[k], result[k]) for k in source if k.startswith("backbone.") and "bn.running" not in k
               and "num_batches" not in k)


def test_non_finite_losses_stop_the_run(settings, monkeypatch):
    from detforge.losses import detection

    monkeypatch.setattr(detection.DetectionLoss, "forward",
                        lambda self, out, *t: (out.cls.sum() * float("nan"), {"cls": torch.tensor(float("nan"))}))
    with pytest.raises(TrainingDivergedError):
        run(settings, max_nonfinite=2)


def test_bad_settings_are_one_line_errors(settings):
    with pytest.raises(ConfigError, match="lr_zero: unknown training setting"):
        make_train_config({**settings, "lr_zero": 1})
    with pytest.raises(ConfigError, match="epochs"):
        make_train_config({**settings, "epochs": "many"})
    with pytest.raises(ConfigError, match="augment.mosaik"):
        make_train_config({**settings, "augment": {"mosaik": 0.5}})
    with pytest.raises(ConfigError, match=r"channels_last: use true, false or auto \(got 'maybe'\)"):
        make_train_config({**settings, "channels_last": "maybe"})


def test_model_train_method_trains_in_place(settings, tiny_model):
    model = detforge.create_model(tiny_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = model.train(**{**{k: v for k, v in settings.items() if k != "model"}, "epochs": 1})
    assert result.best.is_file() and model.training  # still an nn.Module: train() without settings works
    best = read_weights(result.best)[0]
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train(False)
    assert not model.training


def test_a_p6_model_trains_at_a_multiple_of_its_stride(settings, tmp_path, caplog):
    """Sides that are multiples of 32 but not 64 would fail inside a P6 model's neck: the size is rounded
    up and the loaders (rectangular validation batches too) use the model's stride."""
    model = tmp_path / "p6.yaml"
    model.write_text("backbone: {type: csp_darknet, stem_channels: 8, stage_channels: [16, 16, 32, 32, 32], "
                     "stage_depths: [1, 1, 1, 1, 1], out_levels: [3, 4, 5, 6]}\n"
                     "neck: {type: pan_fpn, depth: 1}\nhead: {type: decoupled, num_classes: 2}\n")
    with caplog.at_level(logging.WARNING):
        result = run(settings, model=str(model), imgsz=96, epochs=1)
    assert "imgsz 96 is not a multiple of the model's largest stride 64; training at 128" in caplog.text
    assert detforge.load(result.best).meta["train"]["imgsz"] == 128


class TrainingInputs(Callback):
    """Records, for each training forward, the dtype the head receives and whether the images are channels-last."""

    def __init__(self):
        self.dtypes, self.channels_last = [], []

    def on_run_start(self, trainer):
        model = trainer.model
        model.head.register_forward_hook(lambda m, args, out: self.dtypes.append(args[0][0].dtype))
        model.register_forward_pre_hook(lambda m, args: self.channels_last.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_a_cpu_with_native_bf16_trains_under_bf16_autocast_by_default(settings, caplog):
    seen = TrainingInputs()
    with caplog.at_level(logging.INFO):
        result = Trainer(make_train_config({**settings, "epochs": 1}), callbacks=[seen]).train()
    assert set(seen.dtypes) == {torch.bfloat16}  # every training forward (validation runs the EMA model in float32)
    assert "CPU training under bfloat16 autocast" in caplog.text
    assert all(math.isfinite(loss) for loss in result.losses)
    assert {t.dtype for t in read_weights(result.best)[0].values() if t.is_floating_point()} == {torch.float32}


def test_float32_when_asked_for_or_when_the_cpu_has_no_native_bf16(settings, monkeypatch, caplog):
    def precision(**changes):
        trainer = Trainer(make_train_config({**settings, "epochs": 1, **changes}))
        trainer._setup()
        return trainer.use_amp

    assert not precision(amp=False)
    assert not precision(amp_dtype="fp16")  # CPU autocast has no fast float16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert not precision()
        assert not caplog.text  # the default falls back quietly
        assert not precision(amp_dtype="bf16")
    assert "no native bfloat16" in caplog.text  # asked for by name: said why not


@pytest.mark.parametrize(("asked", "expected"), [(None, True), ("auto", True), (False, False), (True, True)])
def test_cpu_training_uses_channels_last_memory_unless_told_not_to(settings, asked, expected):
    seen = TrainingInputs()
    changes = {} if asked is None else {"channels_last": asked}
    result = Trainer(make_train_config({**settings, "epochs": 1, **changes}), callbacks=[seen]).train()
    assert seen.channels_last and set(seen.channels_last) == {expected}
    loaded = detforge.load(result.best)  # the weights file holds the standard layout whatever training used
    assert all(p.is_contiguous() for p in loaded.parameters())
