"""Python SDK: log predictions, labels and resource usage to a modelwatch server.

    from collector.sdk import Client

    client = Client("http://modelwatch:8000", api_key="mw_...")
    client.log_prediction("churn", "v7", request_id, features, prediction, score=p)
    with client.measure("churn", "v7"):
        y = model.predict(x)

Items are sent in background batches; ``log_*`` never blocks on the network or
raises because of it. While the service is unavailable batches are held and
retried (honouring ``Retry-After``) for up to ``max_outage_s``, in a bounded
buffer, optionally spilled to ``spill_dir``. Everything still buffered is
flushed on :meth:`Client.close` and at interpreter exit; what was dropped is
counted by reason in :attr:`Client.dropped`.
"""

from collector.sdk._http import RetryPolicy
from collector.sdk._stats import DROP_REASONS, ClientStats
from collector.sdk.client import Client, Timestamp
from collector.sdk.usage import Measurement, measured

__all__ = [
    "DROP_REASONS",
    "Client",
    "ClientStats",
    "Measurement",
    "RetryPolicy",
    "Timestamp",
    "measured",
]
