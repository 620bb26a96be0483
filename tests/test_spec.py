from __future__ import annotations

import pytest

from symsoft.errors import SpecError
from symsoft.spec import K_MAX, make_spec, validate_identifier


@pytest.mark.parametrize("k", [0, -1, K_MAX + 1, 2.0, "3", True, None])
def test_bad_k_is_refused(k):
    with pytest.raises(SpecError, match="K must be"):
        make_spec(k)


def test_defaults_are_the_worked_example():
    spec = make_spec()
    assert spec.k == 3
    assert spec.example == (2.0, 1.0, 0.1)
    assert spec.labels == ("cat", "dog", "bird")


def test_other_k_get_defaults_of_the_right_length():
    for k in (1, 2, 4, 50):
        spec = make_spec(k)
        assert len(spec.example) == len(spec.labels) == k
        assert len(set(spec.labels)) == k


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"example": [1.0, 2.0]}, "needs 3 logits"),
        ({"example": [1.0, float("inf"), 2.0]}, "finite"),
        ({"example": [1.0, True, 2.0]}, "numbers"),
        ({"labels": ["a", "b", "a"]}, "repeated: a"),
        ({"labels": ["a", "b"]}, "needs 3 names"),
        ({"labels": ["a", "b", "c}"]}, "must start with a letter"),
        ({"labels": ["cat\n", "dog", "bird"]}, "must start with a letter"),
        ({"labels": ["cat", "dog\r\n", "bird"]}, "must start with a letter"),
        ({"true_class": 3}, "true class"),
        ({"lang": "fr"}, "language"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        make_spec(3, **kwargs)


@pytest.mark.parametrize("name", ["for", "class", "9lives", "a-b", "__x", "_Upper", ""])
def test_bad_identifiers(name):
    with pytest.raises(SpecError):
        validate_identifier(name, "prefix")


def test_good_identifier():
    assert validate_identifier("my_softmax", "prefix") == "my_softmax"
