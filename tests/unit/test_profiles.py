from __future__ import annotations

import pytest

from hubforge.profiles import ProfileError, default_profiles, find_profile, validate_profiles


def test_default_profiles_follow_the_inventory():
    assert [p["slug"] for p in default_profiles(0)] == ["cpu"]
    profiles = default_profiles(3)
    assert [p["display_name"] for p in profiles] == ["CPU", "1 GPU", "2 GPUs", "3 GPUs"]
    assert [p["gpus"] for p in profiles] == [0, 1, 2, 3]


def test_validation_fills_defaults_and_picks_a_default():
    profiles = validate_profiles([{"slug": "small"}, {"slug": "big", "gpus": 1}])
    assert profiles[0]["default"] is True
    assert profiles[0]["display_name"] == "small"
    assert profiles[1]["gpus"] == 1


def test_every_problem_is_reported_at_once():
    with pytest.raises(ProfileError) as info:
        validate_profiles(
            [
                {"slug": "Bad Slug", "gpus": -1},
                {"slug": "ok", "gpu": 1, "memory": "lots"},
                {"slug": "ok"},
                "cpu",
            ]
        )
    message = str(info.value)
    assert "profiles[0].slug='Bad Slug'" in message
    assert "profiles[0].gpus=-1" in message
    assert "profiles[1]: unknown key 'gpu'" in message
    assert "profiles[1].memory='lots'" in message
    assert "profiles[2].slug='ok' is used twice" in message
    assert "profiles[3] must be a dict" in message


def test_empty_list_is_refused():
    with pytest.raises(ProfileError, match="at least one profile"):
        validate_profiles([])


def test_find_profile_names_the_choices():
    profiles = validate_profiles(default_profiles(2))
    assert find_profile(profiles, "gpu-2")["gpus"] == 2
    with pytest.raises(
        ProfileError, match=r"No such profile: 'gpu-3'. Options include: cpu, gpu-1, gpu-2"
    ):
        find_profile(profiles, "gpu-3")
