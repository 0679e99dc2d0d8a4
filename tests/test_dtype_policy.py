"""The dtype policy: `auto` from the CPU's features and the GPU, names and aliases, and the CLI's --dtype/--backend."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pointclip_hf import dtype_policy
from pointclip_hf.cli import main
from pointclip_hf.dtype_policy import cpu_flags, fastest_safe_dtype, resolve_dtype
from pointclip_hf.model.choices import dtype_name

EXAMPLES = Path(__file__).parent.parent / "examples"
X86_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f {extra}\n\nprocessor\t: 1\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd {extra}\nCPU implementer\t: 0x41\n"


def native_bfloat16(monkeypatch, tmp_path, cpuinfo: str, machine: str, capability: str = "AVX512") -> bool:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(dtype_policy, "_CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(dtype_policy.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    return dtype_policy.cpu_has_native_bfloat16.__wrapped__()


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "capability", "expected"),
    [
        (X86_CPUINFO.format(extra="avx512_bf16"), "x86_64", "AVX512", True),
        (X86_CPUINFO.format(extra="amx_tile amx_bf16"), "x86_64", "AVX512", True),
        (X86_CPUINFO.format(extra="avx512_bf16"), "x86_64", "AVX2", False),  # torch not using its AVX512 kernels
        (X86_CPUINFO.format(extra="avx512bw"), "x86_64", "AVX512", False),  # bf16 only emulated
        (ARM_CPUINFO.format(extra="bf16 i8mm"), "aarch64", "DEFAULT", True),
        (ARM_CPUINFO.format(extra="sve"), "aarch64", "DEFAULT", False),
        ("", "x86_64", "AVX512", False),
    ],
)
def test_native_bfloat16_from_cpu_features(monkeypatch, tmp_path, cpuinfo, machine, capability, expected):
    assert native_bfloat16(monkeypatch, tmp_path, cpuinfo, machine, capability) is expected


def test_unreadable_cpuinfo_means_no_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(dtype_policy, "_CPUINFO", tmp_path / "missing")
    assert cpu_flags() == set()
    assert cpu_flags("flags : a b\nflags : c\n") == {"a", "b"}


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cpu_follows_native_bfloat16(monkeypatch, native, expected):
    monkeypatch.setattr(dtype_policy, "cpu_has_native_bfloat16", lambda: native)
    assert fastest_safe_dtype() == expected
    assert fastest_safe_dtype("cpu") == expected
    assert resolve_dtype("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_cuda_prefers_bfloat16_then_float16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "device", lambda device: torch.device("cpu"))  # a no-op context manager
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert fastest_safe_dtype("cuda:0") == expected


def test_other_devices_stay_float32():
    assert fastest_safe_dtype("meta") == torch.float32


@pytest.mark.parametrize(
    ("name", "expected"),
    [("float32", torch.float32), ("fp32", torch.float32), ("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16),
     ("float16", torch.float16), ("fp16", torch.float16), (torch.float16, torch.float16), (None, None)],
)  # fmt: skip
def test_names_and_aliases(name, expected):
    assert resolve_dtype(name) == expected


def test_bad_dtypes_are_named():
    with pytest.raises(ValueError, match="'float8'.*valid choices are auto, float32"):
        resolve_dtype("float8")
    with pytest.raises(ValueError, match="torch.int8"):
        resolve_dtype(torch.int8)
    with pytest.raises(TypeError, match="int"):
        resolve_dtype(16)
    assert dtype_name(torch.bfloat16) == "bfloat16"


def classify_json(capsys, model_dir, *flags) -> list[dict]:
    files = [str(EXAMPLES / "mug.npy"), str(EXAMPLES / "table.npy")]
    assert main(["classify", *files, "--labels", "cup,table,bear", "--model", str(model_dir), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("flag", "expected"), [("bf16", "bfloat16"), ("float16", "float16"), ("fp32", "float32")])
def test_cli_dtype_is_applied_and_recorded(tiny_clip_dir, capsys, flag, expected):
    printed = classify_json(capsys, tiny_clip_dir, "--dtype", flag)
    assert {entry["dtype"] for entry in printed} == {expected}
    assert {entry["backend"] for entry in printed} == {"torch"}


def test_cli_dtype_auto_follows_the_policy(tiny_clip_dir, capsys, monkeypatch):
    monkeypatch.setattr(dtype_policy, "cpu_has_native_bfloat16", lambda: True)
    assert {entry["dtype"] for entry in classify_json(capsys, tiny_clip_dir, "--dtype", "auto")} == {"bfloat16"}
    monkeypatch.setattr(dtype_policy, "cpu_has_native_bfloat16", lambda: False)
    assert {entry["dtype"] for entry in classify_json(capsys, tiny_clip_dir, "--dtype", "auto")} == {"float32"}


def test_cli_default_is_auto_and_is_printed(tiny_clip_dir, capsys, monkeypatch):
    monkeypatch.setattr(dtype_policy, "cpu_has_native_bfloat16", lambda: True)
    files = [str(EXAMPLES / "mug.npy")]
    assert main(["classify", *files, "--labels", "cup,table", "--model", str(tiny_clip_dir), "--json"]) == 0
    captured = capsys.readouterr()
    assert {entry["dtype"] for entry in json.loads(captured.out)} == {"bfloat16"}
    assert "Computing in bfloat16 (--dtype auto; --dtype float32 gives the official numbers)." in captured.err


def test_cli_rejects_bad_backend_combinations(tiny_clip_dir, capsys):
    files = [str(EXAMPLES / "mug.npy"), "--labels", "cup,table", "--model", str(tiny_clip_dir)]
    files += ["--backend", "onnxruntime"]
    assert main(["classify", *files, "--dtype", "bf16"]) == 2
    assert "--backend onnxruntime" in capsys.readouterr().err
    assert main(["classify", *files, "--compile"]) == 2
    assert "--compile" in capsys.readouterr().err


def test_cli_onnxruntime_backend_matches_torch(tiny_clip_dir, capsys, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # the export cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path))
    monkeypatch.setattr(dtype_policy, "cpu_has_native_bfloat16", lambda: True)
    torch_run = classify_json(capsys, tiny_clip_dir, "--dtype", "float32")
    onnx_run = classify_json(capsys, tiny_clip_dir, "--backend", "onnxruntime")
    assert {(entry["backend"], entry["dtype"]) for entry in onnx_run} == {("onnxruntime", "float32")}, "auto: float32"
    labels = [[[p["label"] for p in entry["predictions"]] for entry in run] for run in (torch_run, onnx_run)]
    assert labels[0] == labels[1]
    assert any((tmp_path / "pointclip_hf" / "onnx").iterdir())


def test_evaluate_records_dtype_in_report_and_predictions_header(tiny_clip_dir, example_clouds, tmp_path, capsys):
    root = tmp_path / "data"
    for name, cloud in zip(["box", "chair"], example_clouds):
        (root / name).mkdir(parents=True)
        np.save(root / name / "0.npy", cloud)
    out = tmp_path / "eval"
    assert main(["evaluate", "--dataset", str(root), "--split", "train", "--model", str(tiny_clip_dir),
                 "--output-dir", str(out), "--dtype", "bf16"]) == 0  # fmt: skip
    assert "dtype bfloat16, image tower torch" in capsys.readouterr().out
    setup = json.loads((out / "report.json").read_text())["setup"]
    assert setup["dtype"] == "bfloat16" and setup["runtime"]["image_tower_backend"] == "torch"
    header = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])["header"]
    assert header["fingerprint"]["dtype"] == "bfloat16"
