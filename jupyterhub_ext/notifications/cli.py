"""``jupyterhub-ext-notify``: broadcast a notification from scripts and cron.

Reads the hub's API URL and a token from ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN`` (the token never goes on the command line, where
``ps`` would show it). Prints one line per server and exits

- 0 when every server got the message (or none was running),
- 1 when any delivery failed,
- 2 when the hub refused the request or could not be reached.

Only the standard library, so it runs wherever Python does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from jupyterhub_ext.notifications.broadcast import VARIANTS

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class HubRequestError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jupyterhub-ext-notify",
        description="Show a notification in every running JupyterLab of a JupyterHub "
        "(needs the custom:jupyterhub-ext:broadcast scope).",
        epilog="Environment: JUPYTERHUB_API_URL (e.g. https://hub.example.org/hub/api) and "
        "JUPYTERHUB_API_TOKEN. Exit status: 0 all delivered, 1 some delivery failed, "
        "2 request refused or hub unreachable.",
    )
    p.add_argument("message", nargs="?", help="the text to show (plain text)")
    p.add_argument("-t", "--type", default="info", choices=VARIANTS, help="default: info")
    close = p.add_mutually_exclusive_group()
    close.add_argument(
        "--auto-close",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="close the notification after this many seconds (default: 5)",
    )
    close.add_argument("--sticky", action="store_true", help="stay until dismissed")
    p.add_argument(
        "--to",
        action="append",
        metavar="USER[/SERVER]",
        help="send only to this user's (named) server; repeat for more (default: all running)",
    )
    p.add_argument("--list", action="store_true", help="list running servers and exit")
    p.add_argument("--json", action="store_true", help="print the hub's JSON answer")
    p.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait for the hub (default: 300)"
    )
    return p


def _call(
    api_url: str, token: str, method: str, path: str, body: Any = None, timeout: float = 300
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api_url.rstrip("/") + path, data=data, method=method)
    req.add_header("Authorization", f"token {token}")
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        raise HubRequestError(f"the hub answered {e.code}: {message}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise HubRequestError(f"cannot reach the hub at {api_url}: {reason}") from None


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        print(
            "jupyterhub-ext-notify: set JUPYTERHUB_API_URL (e.g. http://127.0.0.1:8081/hub/api) "
            "and JUPYTERHUB_API_TOKEN",
            file=sys.stderr,
        )
        return EXIT_ERROR

    try:
        if args.list:
            servers = _call(api_url, token, "GET", "/notifications/active-servers")["servers"]
            if args.json:
                print(json.dumps(servers, indent=1))
            else:
                for s in servers:
                    print(s["username"] + (f"/{s['server']}" if s["server"] else ""))
            return EXIT_OK
        if not args.message:
            print("jupyterhub-ext-notify: a message is required", file=sys.stderr)
            return EXIT_ERROR
        if not args.sticky and not args.auto_close > 0:
            print("jupyterhub-ext-notify: --auto-close must be > 0", file=sys.stderr)
            return EXIT_ERROR
        body: dict[str, Any] = {
            "message": args.message,
            "variant": args.type,
            "autoClose": False if args.sticky else round(args.auto_close * 1000),
        }
        if args.to:
            body["recipients"] = args.to
        result = _call(
            api_url, token, "POST", "/notifications/broadcast", body, timeout=args.timeout
        )
    except HubRequestError as e:
        print(f"jupyterhub-ext-notify: {e}", file=sys.stderr)
        return EXIT_ERROR

    if args.json:
        print(json.dumps(result, indent=1))
    elif result["details"]:
        rows = [["USER", "SERVER", "STATUS", "WHY"]]
        rows += [
            [d["username"], d["server"] or "-", d["status"], d.get("error", "")]
            for d in result["details"]
        ]
        print(_table(rows))
    if not args.json:
        if result["total"] == 0:
            print("No server is running: nothing was sent.")
        else:
            print(
                f"{result['successful']} of {result['total']} delivered, {result['failed']} failed."
            )
    return EXIT_FAILED if result["failed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
