"""Test-wide settings: hypothesis profiles.

``default`` is quick for local runs; ``ci`` (chosen when ``CI`` is set, as ``.ci/run``
does) runs many more examples. ``HYPOTHESIS_PROFILE`` picks one explicitly.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
_default = "ci" if os.environ.get("CI") else "default"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
