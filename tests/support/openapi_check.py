"""Every answer a test receives, checked against the OpenAPI document the server serves.

``ResponseCheck(document)`` is an httpx response hook: it finds the operation the request
went to, the answer documented for its status (or ``default``), and checks the content
type and, for JSON, the body against the schema (JSON Schema 2020-12, formats checked).
A path or method the document does not name must be answered with the error shape.
Only JSON bodies are read here: a page, a key or an event stream is the test's to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from jsonschema import Draft202012Validator


class ContractViolation(AssertionError):
    """An answer outside the document."""


@dataclass
class ResponseCheck:
    document: dict[str, Any]
    # Only answers from this server are checked (a test may ask a sandbox directly).
    origin: str = ""
    checked: int = 0
    _paths: list[tuple[re.Pattern[str], str]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        templates = sorted(self.document["paths"], key=lambda t: (t.count("{"), t))
        for template in templates:
            regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
            self._paths.append((re.compile(f"^{regex}$"), template))

    def template_of(self, path: str) -> str | None:
        return next((t for pattern, t in self._paths if pattern.match(path)), None)

    def schema_of(self, schema: dict[str, Any]) -> Draft202012Validator:
        rooted = {**schema, "components": self.document["components"]}
        return Draft202012Validator(rooted, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        if self.origin and not str(request.url).startswith(f"{self.origin}/"):
            return
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type == "text/event-stream":
            return
        if media_type == "application/json" or response.status_code >= 400:
            response.read()  # other bodies are the test's to read (raw, streamed)
        self.check(request.method, request.url.path, response.status_code, media_type, response)

    def check(
        self, method: str, path: str, status: int, media_type: str, response: httpx.Response
    ) -> None:
        where = f"{method} {path} -> {status}"
        template = self.template_of(path)
        operation = self.document["paths"].get(template or "", {}).get(method.lower())
        if operation is None:
            if not 400 <= status < 500:
                raise ContractViolation(f"{where}: an undocumented request was not refused")
            self._check_json(where, {"$ref": "#/components/schemas/Error"}, response)
            return
        answers = operation["responses"]
        answer = answers.get(str(status), answers.get("default"))
        if answer is None:
            raise ContractViolation(f"{where}: status not in the document")
        content = answer.get("content")
        if content is None:
            if response.headers.get("content-length", "0") != "0":
                raise ContractViolation(f"{where}: a body where the document says none")
            self.checked += 1
            return
        if media_type not in content and "*/*" not in content:
            raise ContractViolation(f"{where}: content type {media_type!r} not in {list(content)}")
        if media_type == "application/json":
            self._check_json(where, content[media_type]["schema"], response)
        self.checked += 1

    def _check_json(self, where: str, schema: dict[str, Any], response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            raise ContractViolation(f"{where}: the body is not JSON") from None
        errors = sorted(self.schema_of(schema).iter_errors(body), key=lambda e: e.path)
        if errors:
            worst = errors[0]
            at = "/".join(str(p) for p in worst.absolute_path)
            raise ContractViolation(f"{where}: {worst.message} (at /{at})")
