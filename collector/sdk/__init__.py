"""Python SDK: log predictions, labels and resource usage to a modelwatch server.

    from collector.sdk import Client

    client = Client("http://modelwatch:8000", api_key="mw_...")
    client.log_prediction("churn", "v7", request_id, features, prediction, score=p)
    with client.measure("churn", "v7"):
        y = model.predict(x)

Items are sent in background batches with retries; ``log_*`` never blocks on
the network or raises because of it. Everything still buffered is flushed on
:meth:`Client.close` and at interpreter exit.
"""

from collector.sdk._batcher import ClientStats
from collector.sdk._http import RetryPolicy
from collector.sdk.client import Client, Timestamp
from collector.sdk.usage import Measurement, measured

__all__ = ["Client", "ClientStats", "Measurement", "RetryPolicy", "Timestamp", "measured"]
