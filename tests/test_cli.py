"""The CLI's experiment subcommands: list, run (typed --set), reproduce, errors."""

from __future__ import annotations

import json

import pytest
import torch

import overparam.data
from overparam.cli import main
from overparam.data import synthetic_gas_sensor

TINY3 = ["--set", "steps=60", "--set", "lrs=1e-2,0.1", "--set", "record_every=30"]



@pytest.fixture
def tiny_data(monkeypatch):
    data = synthetic_gas_sensor(m=40, d=4, seed=5)
    monkeypatch.setattr(overparam.data, "load_regression_data", lambda data_dir=None, **kw: data)
    monkeypatch.delenv("OVERPARAM_DATA", raising=False)
    return data


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("fig2", "fig3", "fig4", "fig5-left"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "1M GD iterations" in out


def test_unknown_experiment(capsys):
    assert main(["run", "fig9"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'fig9'" in err and "fig3" in err


@pytest.mark.parametrize("setting, words", [
    ("stepz=10", ["unknown config key 'stepz'", "valid keys:", "steps", "lrs"]),
    ("steps=ten", ["steps", "'ten'", "int"]),
    ("lrs=1e-3,abc", ["lrs", "float"]),
    ("steps=0", ["steps", "0"]),
])
def test_bad_set(setting, words, capsys, tmp_path):
    assert main(["run", "fig3", "--set", setting, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("overparam: error:")
    for w in words:
        assert w in err
    assert not any(tmp_path.iterdir())  # nothing written for a rejected config


def test_run_writes_a_run_dir_and_resumes(tiny_data, tmp_path, capsys):
    args = ["run", "fig3", *TINY3, "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC STAND-IN" in out
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("fig3-") and (run_dir / "report.md").is_file()
    assert str(run_dir / "report.md") in out
    assert main(args) == 0
    assert "reusing the finished result" in capsys.readouterr().out
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["steps"] == 60 and cfg["config"]["lrs"] == [0.01, 0.1]


def test_reproduce_writes_a_combined_report(tiny_data, tmp_path, monkeypatch, capsys):
    import overparam.experiments as ex

    # Only two experiments, with tiny quick configs, to keep this fast.
    f3 = ex.get_experiment("fig3")
    f5 = ex.get_experiment("fig5-left")
    monkeypatch.setattr(f3, "QUICK", f3.Config(steps=40, lrs=(1e-2,), record_every=20))
    monkeypatch.setattr(f5, "QUICK", f5.Config(steps=40, lrs=(1e-2,), depths=(4,), identity_depths=(1,),
                                               record_every=20))
    monkeypatch.setattr(ex, "_available", lambda: ["fig3", "fig5-left"])
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "QUICK" in report and "synthetic stand-in" in report.lower()
    assert "fig3-quick/report.md" in report and "fig5-left-quick/report.md" in report
    assert (tmp_path / "fig3-quick" / "fig3.png").is_file()


def test_reproduce_reports_a_failing_experiment_and_continues(tiny_data, tmp_path, monkeypatch, capsys):
    import overparam.experiments as ex

    f3 = ex.get_experiment("fig3")
    monkeypatch.setattr(f3, "QUICK", f3.Config(steps=40, lrs=(1e-2,), record_every=20))
    f2 = ex.get_experiment("fig2")

    def boom(config, ctx):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(f2, "run", boom)
    monkeypatch.setattr(ex, "_available", lambda: ["fig2", "fig3"])
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--no-progress"]) == 1
    report = (tmp_path / "report.md").read_text()
    assert "FAILED" in report and "simulated failure" in report
    assert (tmp_path / "fig3-quick" / "results.json").is_file()


def test_download_failure_is_one_clear_line(monkeypatch, capsys, tmp_path):
    import overparam.data as data

    def offline(dest, **kw):
        raise OSError("download of https://example.invalid/x.zip failed: Name or service not known")

    monkeypatch.setattr(data, "download_gas_sensor", offline)
    from overparam.cli import main

    assert main(["data", "download", "gas-sensor", "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "overparam: error: download of https://example.invalid/x.zip failed" in err
    assert "Traceback" not in err
