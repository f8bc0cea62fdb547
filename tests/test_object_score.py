"""object_score.py: supported groups and the object score over supported points."""

import numpy as np
import pytest

from group3ad.config import Group3ADConfig
from group3ad.errors import UserError
from group3ad.object_score import object_score, supported_groups, supported_points


def test_supported_groups_against_the_median():
    radii = np.array([1.0, 1.1, 0.9, 1.0, 4.0, 4.5, 30.0])  # median 1.1
    np.testing.assert_array_equal(supported_groups(radii, 4.0), [1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(supported_groups(radii, 0), np.ones(7, bool))
    assert supported_groups(np.zeros(0), 4.0).shape == (0,)


def test_supported_points_follow_their_nearest_centre():
    radii = np.array([1.0, 1.0, 50.0])
    nearest = np.array([0, 2, 2, 1, 0])
    np.testing.assert_array_equal(supported_points(radii, nearest, 4.0), [1, 0, 0, 1, 1])


def test_object_score_ignores_unsupported_points_and_falls_back_to_max():
    scores = np.array([0.2, 9.0, 0.7, 0.5])
    assert object_score(scores, np.array([1, 0, 1, 1], bool)) == 0.7
    assert object_score(scores, np.ones(4, bool)) == 9.0
    assert object_score(scores, np.zeros(4, bool)) == 9.0  # nothing supported: plain max


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "4", True])
def test_support_ratio_is_validated(bad):
    with pytest.raises(UserError, match="support_ratio"):
        Group3ADConfig(support_ratio=bad).validate()
