"""Built-in metrics; importing this package registers them all."""

from evaluators.metrics import (  # noqa: F401
    classification,
    comparison,
    cost,
    quality,
    regression,
)
