"""One place where httpx's transport failures become bitloot's errors.

Timeouts and connection failures are worth retrying (``unavailable``); any other
httpx failure is not (``failure``). The exception is chained (``raise ... from``), and
the message names only the call, never a header or a key.
"""

from __future__ import annotations

from typing import Any

import httpx

from bitloot_core.errors import BitlootError


def request(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    api_key: tuple[str, str],
    what: str,
    unavailable: type[BitlootError],
    failure: type[BitlootError],
    content: bytes | None = None,
    **options: Any,
) -> httpx.Response:
    """A JSON API call: ``api_key`` is the (header, key) pair; ``content`` a JSON body."""
    name, key = api_key
    headers = {name: key, "Accept": "application/json"}
    if content is not None:
        headers["Content-Type"] = "application/json"
    try:
        return http.request(method, url, content=content, headers=headers, **options)
    except httpx.TimeoutException as exc:
        raise unavailable(f"{what} timed out") from exc
    except httpx.TransportError as exc:
        raise unavailable(f"{what} failed: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        raise failure(f"{what} failed: {type(exc).__name__}") from exc
