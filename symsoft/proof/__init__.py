"""The exact prover: zero tests by normal forms and proved identities, knowing nothing about
softmax (the derivation says which symbols are positive and which sums they stand for)."""

from symsoft.proof.class_sum import ClassSum, expand_class_sums
from symsoft.proof.identity import Identity, prove_entries
from symsoft.proof.normal_form import Relation, is_zero, is_zero_difference

__all__ = [
    "ClassSum",
    "Identity",
    "Relation",
    "expand_class_sums",
    "is_zero",
    "is_zero_difference",
    "prove_entries",
]
