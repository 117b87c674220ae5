"""Every YAML of the core groups in steindiff/conf/sample/ instantiates to the core object it names, read as a plain
file (the whole app composition is tested in test_app.py)."""

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from steindiff.cli.app import conf_dir
from steindiff.core import Corrector, Denoiser, SigmaGrid, Solver

CONF = conf_dir("sample")
CORE_GROUPS = ("solver", "schedule", "denoiser", "corrector")
# configs with a mandatory value (a checkpoint path: ???) are instantiated with real files in test_loaders.py
FILES = sorted(p for g in CORE_GROUPS for p in CONF.glob(f"{g}/*.yaml")
               if p.read_text().count("_target_") and "???" not in p.read_text())


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_config_instantiates(path):
    # the posterior oracle's data law (data: null) is filled in by build_run from the denoiser (tests/test_oracle.py)
    obj = instantiate(OmegaConf.load(path), **({"data": "ring2d"} if path.stem == "oracle" else {}))
    group = path.parent.name
    if group == "solver":
        assert isinstance(obj, Solver)
    elif group == "corrector":
        assert isinstance(obj, Corrector)
    elif group == "denoiser":
        assert isinstance(obj, Denoiser)
    elif group == "schedule":
        grid = obj.grid(num_steps=4)
        assert isinstance(grid, SigmaGrid) and grid.num_steps == 4 and grid.final_step == "zero"


def test_there_are_configs():
    assert {p.parent.name for p in FILES} >= {"solver", "schedule", "denoiser", "corrector"}
