"""Built-in metrics; importing this package registers them all."""

import evaluators.metrics.drift  # noqa: F401
from evaluators.metrics import (  # noqa: F401
    classification,
    comparison,
    comparison_sequential,
    cost,
    estimation,
    estimation_regression,
    multivariate,
    quality,
    regression,
)
