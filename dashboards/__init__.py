"""The Dash app, the Prometheus exporter and Evidently drill-down reports."""
