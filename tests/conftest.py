"""Test-wide isolation: no credentials or proxy leak in from the machine, and nothing leaves loopback.

alibabacloud-credentials reads its environment variables once, at import, so they are set here,
before anything imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_HOME = tempfile.mkdtemp(prefix="eas-scanner-test-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
# The transport honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY (scanner.client.proxy), and CI machines
# often set them (for pip): every test, and every subprocess a test starts, runs without them; the
# tests of the proxy (tests/test_proxy.py) set them with monkeypatch.
_PROXY_VARIABLES = ("https_proxy", "http_proxy", "no_proxy", "all_proxy")
for _name in list(os.environ):
    if (
        _name.startswith(("ALIBABA_CLOUD_", "ALIBABACLOUD_", "ALICLOUD_"))
        or _name.lower() in _PROXY_VARIABLES
    ):
        del os.environ[_name]
os.environ["HOME"] = _HOME
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

from tests import netguard  # noqa: E402

netguard.install()
