"""Rotating the IPN secret with no IPN refused, over real HTTP on both servers: during the
rotation IPNs signed under either secret are applied, and the webhook log says which
secret signed each; after it, the old secret is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow import admin_order, create_order, get_order, ipn_body, open_payment, post_ipn, sign

from support.servers import running_server

KINDS = ["fastapi", "flask"]
OLD = "ipn-secret-being-retired-0123456789"
NEW = "ipn-secret-taking-over-9876543210"


@pytest.mark.parametrize("kind", KINDS)
def test_ipns_signed_under_either_secret_are_applied_during_a_rotation(
    kind: str, tmp_path: Path
) -> None:
    env = {
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": NEW,
        "BITLOOT_NOWPAYMENTS_IPN_SECRET_PREVIOUS": OLD,
    }
    with running_server(kind, tmp_path / "data", env) as s:
        order = create_order(s)
        payment = open_payment(s, order)
        confirming = ipn_body(s, payment["id"], payment_status="confirming")
        assert post_ipn(s, confirming, sign(s, confirming, OLD)).status_code == 200
        assert get_order(s, order)["status"] == "confirming"
        confirmed = ipn_body(s, payment["id"], payment_status="confirmed")
        assert post_ipn(s, confirmed, sign(s, confirmed, NEW)).status_code == 200
        other = ipn_body(s, payment["id"], payment_status="sending")
        refused = post_ipn(s, other, sign(s, other, "a-third-secret-nobody-set"))
        assert refused.status_code == 401
        reasons = {
            w["provider_status"]: w["reason"] for w in admin_order(s, order["id"])["webhooks"]
        }
        assert reasons["confirming"].startswith("ipn signed with the previous secret: ")
        assert reasons["confirmed"].startswith("ipn: ")
        # Nothing in the log or the answers shows either secret.
        assert OLD not in refused.text
        assert NEW not in str(reasons)

    # The rotation is over: the previous secret is no longer set, and no longer accepted.
    with running_server(kind, tmp_path / "data", {"BITLOOT_NOWPAYMENTS_IPN_SECRET": NEW}) as s:
        later = open_payment(s, create_order(s))
        late = ipn_body(s, later["id"], payment_status="confirming")
        assert post_ipn(s, late, sign(s, late, OLD)).status_code == 401
        assert post_ipn(s, late, sign(s, late, NEW)).status_code == 200
