"""Real I/O for bitloot: each module is one adapter, imported on its own.

``sqlite_store`` (the Store), ``nowpayments`` and ``kinguin`` (httpx clients),
``vault_file`` and ``vault_s3`` (key vaults), ``mailers`` (SMTP and .eml files),
``clock``, ``logs`` (structlog), ``metrics`` (Prometheus), ``worker``, ``cli``,
``settings`` and ``bootstrap`` (one place that wires a shop), ``http_api`` (the HTTP API
for any web framework) and ``sandbox`` (NOWPayments and Kinguin stand-ins on loopback).
Nothing is imported here, so a host app pays only for the adapters it uses.
"""

__all__: list[str] = []
