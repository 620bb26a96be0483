"""Check hand-written derivatives of the softmax family (softmax, log-softmax, cross-entropy
with its options, log-sum-exp, distillation KL, the cross-entropy Hessian) against exact ones."""

from symsoft.gradcheck.check import check_gradient
from symsoft.gradcheck.diagnose import TITLES as BUG_CLASSES
from symsoft.gradcheck.errors import CheckUsageError
from symsoft.gradcheck.report import Report
from symsoft.gradcheck.tolerance import C as TOLERANCE_C

__all__ = ["BUG_CLASSES", "TOLERANCE_C", "CheckUsageError", "Report", "check_gradient"]
