"""The JupyterLab launcher's "Label Studio" card (a jupyter-server-proxy entry point).

Clicking it starts this tiny page on demand (through jupyter-server-proxy, under
``<server>/label-studio/``); the page sends the browser on to ``<server>/hubforge/labeling/
open``, which signs the user into Label Studio (through the hub's one port) and opens their
projects. No password is typed; nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ICON = Path(__file__).with_name("label-studio.svg")


def server_process() -> dict[str, Any]:
    """jupyter-server-proxy's settings for the launcher card."""
    return {
        "command": [
            sys.executable,
            "-m",
            "hubforge.labeling.launcher",
            "--port",
            "{port}",
            "--base-url",
            "{base_url}",
        ],
        "timeout": 30,
        "new_browser_tab": True,
        "launcher_entry": {
            "enabled": True,
            "title": "Label Studio",
            "icon_path": str(ICON),
            "category": "Notebook",  # where JupyterLab shows a card's own icon
        },
    }


def page(base_url: str, next_path: str = "/projects/") -> bytes:
    """A page that moves on to the signed-in route (a redirect header would be rewritten
    under the proxy's prefix)."""
    target = f"{base_url.rstrip('/')}/hubforge/labeling/open?next={next_path}"
    return (
        "<!doctype html><meta charset='utf-8'><title>Label Studio</title>"
        f"<meta http-equiv='refresh' content='0; url={html.escape(target)}'>"
        f"<script>location.replace({json.dumps(target)})</script>"
        f"<p>Opening Label Studio… <a href='{html.escape(target)}'>continue</a></p>"
    ).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", default="/")
    args = parser.parse_args(argv)
    body = page(args.base_url)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
