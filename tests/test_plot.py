"""Figures are redrawn from a run directory's saved files only."""

from __future__ import annotations

import pytest
import torch

import overparam.data
import overparam.sweep as engine
from overparam.cli import main
from overparam.data import synthetic_gas_sensor
from overparam.experiments import run_experiment
from overparam.plot import plot_run



@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    data = synthetic_gas_sensor(m=40, d=4, seed=7)
    kw = dict(out=out, data=data, progress=False, echo=lambda s: None)
    return {
        "fig3": run_experiment("fig3", ["steps=60", "lrs=1e-2,0.1", "record_every=20"], **kw),
        "fig2": run_experiment("fig2", ["steps=60", "widths=1,3", "record_every=20"], **kw),
    }


@pytest.mark.parametrize("name", ["fig3", "fig2"])
def test_plot_regenerates_from_saved_files_only(name, run_dirs, monkeypatch, capsys):
    run_dir = run_dirs[name]
    pngs = sorted(run_dir.glob("*.png"))
    assert pngs
    for p in pngs:
        p.unlink()

    def forbidden(*a, **k):
        raise AssertionError("plot must not compute")

    monkeypatch.setattr(engine, "run_sweep", forbidden)
    monkeypatch.setattr(overparam.data, "load_regression_data", forbidden)
    assert main(["plot", str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(run_dir.glob("*.png")) == pngs and printed == [str(p) for p in pngs]
    assert all(p.stat().st_size > 10_000 for p in pngs)
    assert [p.name for p in plot_run(run_dir)] == [p.name for p in pngs]


def test_plot_of_a_non_run_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
