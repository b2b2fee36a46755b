"""The forward proxy the environment names for a department's address, read once when a
connector makes its session: ``HTTP_PROXY`` / ``HTTPS_PROXY`` (credentials in the proxy URL
go as its ``Proxy-Authorization``), unless ``NO_PROXY`` exempts the host — what requests
honoured for the former thread-based transports.

aiohttp's own ``trust_env=True`` would read the environment, and ``~/.netrc`` in a worker
thread, on every request; a connector posts to one address, so once is enough. CA bundles
need nothing here: the default TLS context reads ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``."""

from __future__ import annotations

from urllib.request import getproxies, proxy_bypass

from yarl import URL


def env_proxy(address: str | URL) -> URL | None:
    """The proxy for ``address`` (its scheme's ``*_PROXY``), or None to go direct."""
    target = URL(address)
    if target.host is None or proxy_bypass(target.host):
        return None
    named = getproxies().get(target.scheme)
    return URL(named) if named else None
