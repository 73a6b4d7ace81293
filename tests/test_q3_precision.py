"""Question 3's precision: bf16 autocast only in `quick`, only where the device computes bf16 natively, one
setting away from fp32, part of the run key, and a training step that learns as fp32 does."""
import pytest
import torch
import torch.nn.functional as F

from hw2.engine import machine, registry, store
from hw2.engine.errors import ConfigError
from hw2.q3 import config
from hw2.q3 import experiment as q3_experiment
from hw2.q3.asr import build_asr_model
from hw2.q3.train import _autocast


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has the given feature flags (and no GPU)."""
    monkeypatch.delenv("HW2_PRECISION", raising=False)
    monkeypatch.setattr(machine, "cuda_available", lambda: False)

    def set_flags(*flags):
        monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse4_2", "avx2", *flags})
    return set_flags


@pytest.mark.parametrize("flags", [(), ("avx512f", "avx512bw"), ("avx2", "fma")])
def test_bf16_is_off_where_the_cpu_would_emulate_it(cpu_with, flags):
    cpu_with(*flags)
    assert not config.for_profile("quick").bf16


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_quick_uses_bf16_where_the_cpu_has_it_and_full_never(cpu_with, flag):
    cpu_with(flag)
    assert config.for_profile("quick").bf16
    assert not config.for_profile("full").bf16 and not config.for_profile("smoke").bf16
    assert "bf16" in config.protocol_deviations(config.for_profile("quick"))


def test_fp32_is_one_setting_away(cpu_with, monkeypatch):
    cpu_with("amx_bf16")
    monkeypatch.setenv("HW2_PRECISION", "fp32")
    assert not config.for_profile("quick").bf16
    monkeypatch.setenv("HW2_PRECISION", "bf16")
    assert config.for_profile("full").bf16
    monkeypatch.setenv("HW2_PRECISION", "half")
    with pytest.raises(ConfigError, match="HW2_PRECISION must be one of auto, fp32, bf16"):
        config.for_profile("quick")


def test_precision_is_part_of_the_run_key(cpu_with):
    entry = registry.by_name("q3_asr")
    keys = {}
    for flags in [("avx512_bf16",), ()]:
        cpu_with(*flags)
        (spec,) = q3_experiment.specs({"decoder": "rnn"}, "quick", "standin-test")
        keys[flags] = spec.key
        assert spec.config["bf16"] == bool(flags)
    assert len(set(keys.values())) == 2
    assert store.RunSpec.of(entry, config.for_profile("smoke"), "smoke", "x").key != \
        store.RunSpec.of(entry, config.for_profile("smoke", bf16=True), "smoke", "x").key


def test_the_banner_names_the_precision_and_what_the_cpu_offers(cpu_with):
    cpu_with("avx512_bf16")
    assert q3_experiment.precision_text(config.ASRConfig(bf16=True), "cpu") == "bf16 autocast (native: avx512_bf16)"
    assert q3_experiment.precision_text(config.ASRConfig(), "cpu") == "fp32"
    cpu_with()
    assert "emulated" in q3_experiment.precision_text(config.ASRConfig(bf16=True), "cpu")


@pytest.mark.parametrize("decoder", ["rnn", "transformer"])
def test_a_bf16_step_on_the_cpu_keeps_fp32_weights_and_loss_and_matches_fp32(decoder):
    torch.manual_seed(0)
    x, tokens = torch.randn(4, 80, 64), torch.randint(0, 30, (4, 99))
    losses, grads = {}, {}
    for bf16 in (False, True):
        torch.manual_seed(1)
        model = build_asr_model(decoder, fused=True)
        with _autocast(config.ASRConfig(bf16=bf16), "cpu"):
            logits = model(x, tokens[:, :-1])
        assert logits.dtype == (torch.bfloat16 if bf16 else torch.float32)
        loss = F.cross_entropy(logits.float(), tokens[:, 1:])
        loss.backward()
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
        losses[bf16] = loss.item()
        grads[bf16] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)
    assert F.cosine_similarity(grads[True], grads[False], dim=0) > 0.99


def test_bf16_on_the_cpu_uses_the_explicit_attention_and_fp32_keeps_the_fused_one(cpu_with):
    cpu_with("avx512_bf16")
    assert not config.for_profile("quick").fused_attention
    assert config.for_profile("quick", fused_attention=True).fused_attention  # still one setting away
    cpu_with()
    assert config.for_profile("quick").fused_attention and config.for_profile("full").fused_attention


def test_the_report_names_the_precision_beside_the_other_deviations():
    from hw2.reporting import wording

    assert wording.deviations({"bf16": {"value": True, "protocol": False}}) == "precision bf16 autocast (protocol: fp32)"
