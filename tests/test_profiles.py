"""The Profile object: one per name, composing every chapter's settings; experiments take it,
never a name."""

import dataclasses

import pytest

from repro import profiles
from repro.experiments import benchmark, d3, kerneldiff, kerneldiff_data, selfdeblur, solver


@pytest.mark.parametrize("name", ["smoke", "quick", "paper"])
def test_a_profile_composes_each_chapters_table_of_its_name(name):
    profile = profiles.get(name)
    assert profile.name == name
    assert profile.d3 is d3.PROFILES[name] and profile.selfdeblur is selfdeblur.PROFILES[name]
    assert profile.kerneldiff is kerneldiff.PROFILES[name] and profile.benchmark is benchmark.PROFILES[name]
    assert profile.kerneldiff_data is kerneldiff_data.DATA_PROFILES[name]
    assert profile.solver is solver.SOLVER_PROFILES[name] and profile.toy1d is profiles.TOY[name]
    assert profiles.get(name) == profile  # a pure function of the name


def test_profiles_grow_from_smoke_to_paper():
    smoke, quick, paper = (profiles.get(n) for n in ("smoke", "quick", "paper"))
    for part in ("starts", "steps", "resolution"):
        assert getattr(smoke.toy1d, part) < getattr(quick.toy1d, part) < getattr(paper.toy1d, part)
    assert smoke.d3.steps < quick.d3.steps < paper.d3.steps
    assert smoke.kerneldiff.train.steps < quick.kerneldiff.train.steps < paper.kerneldiff.train.steps
    assert smoke.kerneldiff_data.crop < quick.kerneldiff_data.crop < paper.kerneldiff_data.crop


def test_an_unknown_name_or_a_mixed_profile_is_refused():
    with pytest.raises(ValueError, match=r"profile must be one of \['smoke', 'quick', 'paper'\], got 'fast'"):
        profiles.get("fast")
    quick = profiles.get("quick")
    with pytest.raises(ValueError, match="its d3 settings belong to profile 'smoke'"):
        dataclasses.replace(quick, d3=profiles.get("smoke").d3)
    with pytest.raises(ValueError, match="ToyProfile.starts"):
        profiles.ToyProfile("smoke", resolution=41, starts=0, steps=150, rounds=8)


@pytest.mark.parametrize("call", [
    lambda: d3.variant_configs("smoke"),
    lambda: kerneldiff.unet_config("smoke"),
    lambda: kerneldiff.test_cases("smoke"),
    lambda: solver.solver_path("smoke"),
    lambda: selfdeblur.chapter_folder("smoke"),
    lambda: benchmark.describe("smoke"),
])
def test_experiments_refuse_a_profiles_name_with_a_clear_error(call):
    with pytest.raises(ValueError, match=r"expected a repro.profiles.Profile, got 'smoke'; use repro.profiles.get"):
        call()


def test_a_variant_of_a_profile_reaches_the_experiments():
    """An experiment reads its settings from the object it is given, not from the table of its name."""
    smoke = profiles.get("smoke")
    wider = dataclasses.replace(smoke, kerneldiff_data=dataclasses.replace(smoke.kerneldiff_data, crop=48))
    assert kerneldiff.unet_config(wider).image_size == 48 != kerneldiff.unet_config(smoke).image_size
    assert benchmark.describe(wider) != benchmark.describe(smoke) and "48² centre crops" in benchmark.describe(wider)
