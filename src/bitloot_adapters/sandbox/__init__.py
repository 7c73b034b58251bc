"""Sandbox stand-ins for NOWPayments, BTCPay Server and Kinguin that speak their HTTP
APIs on loopback.

For demos and tests, in bitloot's own suite and in host applications' suites::

    with httpx.Client() as http, SandboxServer(
        NowPaymentsSandbox(api_key="np-key", ipn_secret="ipn-secret", http=http)
    ) as payments, SandboxServer(KinguinSandbox(api_key="kg-key")) as supplier:
        gateway = NowPaymentsClient(http, api_key="np-key", base_url=f"{payments.url}/v1")
        keys = KinguinClient(http, api_key="kg-key", base_url=supplier.url)

The sandbox objects are also the control panel: ``NowPaymentsSandbox.pay/fail/expire``
send signed IPNs, ``outage`` on either plans failures; ``SandboxControls`` is what a
sandbox shop's ``/sandbox/...`` routes drive. Nothing here is for production.
"""

from bitloot_adapters.sandbox.btcpay import (
    BTCPAY_RATES,
    BtcPayCall,
    BtcPaySandbox,
    SentWebhook,
    WebhookDelivery,
    btcpay_signature,
)
from bitloot_adapters.sandbox.controls import AdjustableClock, SandboxControls
from bitloot_adapters.sandbox.faults import OutageMode
from bitloot_adapters.sandbox.kinguin import (
    DEFAULT_PRODUCTS,
    KinguinCall,
    KinguinOutageMode,
    KinguinProduct,
    KinguinSandbox,
    KinguinWebhook,
)
from bitloot_adapters.sandbox.nowpayments import (
    DEFAULT_RATES,
    IpnDelivery,
    NowPaymentsCall,
    NowPaymentsSandbox,
    SentIpn,
)
from bitloot_adapters.sandbox.server import SandboxRequest, SandboxResponse, SandboxServer

__all__ = [
    "BTCPAY_RATES",
    "DEFAULT_PRODUCTS",
    "DEFAULT_RATES",
    "AdjustableClock",
    "BtcPayCall",
    "BtcPaySandbox",
    "IpnDelivery",
    "KinguinCall",
    "KinguinOutageMode",
    "KinguinProduct",
    "KinguinSandbox",
    "KinguinWebhook",
    "NowPaymentsCall",
    "NowPaymentsSandbox",
    "OutageMode",
    "SandboxControls",
    "SandboxRequest",
    "SandboxResponse",
    "SandboxServer",
    "SentIpn",
    "SentWebhook",
    "WebhookDelivery",
    "btcpay_signature",
]
