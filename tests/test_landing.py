"""The landing page people keep open: it refreshes itself and links to what they need
next, the metrics and a poll of each target now (/probe)."""

from __future__ import annotations

import html
from html.parser import HTMLParser

from fixtures_redis import RedisServer


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.refresh: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            self.refresh = a.get("content")


async def test_landing_page_refreshes_and_links_metrics_and_each_probe(
    start_exporter, redis_server: RedisServer
) -> None:
    exp = await start_exporter(
        {
            "poll_interval": "1s",
            "poll_timeout": "800ms",
            "redis": [redis_server.target("cache"), redis_server.target("sessions")],
        }
    )
    await exp.polls("redis", "cache", 1)
    await exp.polls("redis", "sessions", 1)
    status, headers, body = await exp.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = _Page()
    page.feed(body.decode())
    assert page.refresh is not None and int(page.refresh) > 0
    assert "/metrics" in page.links
    probes = [link for link in page.links if link.startswith("/probe?")]
    assert len(probes) == 2
    for target in ("cache", "sessions"):
        (link,) = [p for p in probes if f"target={target}&" in p]
        status, _, probed = await exp.get(html.unescape(link))
        assert status == 200
        assert f'sparki_up{{adapter="redis",target="{target}"}} 1' in probed.decode()
