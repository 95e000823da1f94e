"""Drives two workers of a fleet over MCP (streamable HTTP, /mcp) with the
official MCP Python SDK (PyPI `mcp`): a session opened at one worker is
reached through the other, whose calls are sent where the session lives.

Usage: python3 mcp_fleet.py FIRST_BASE_URL SECOND_BASE_URL TOKEN

Prints one `ok NAME MODE` line per check that held; any failure raises
(exit 1).
"""

import asyncio
import base64
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def connect(url, token, mode):
    transport = streamable_http_client(
        url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    )
    return Client(transport, read_timeout_seconds=300, mode=mode)


async def main(first, second, token, mode):
    async with connect(f"{first}/mcp", token, mode) as at_first, connect(f"{second}/mcp", token, mode) as at_second:
        opened = await at_first.call_tool("run_code", {"code": "x = 41"})
        assert not opened.is_error, opened
        session = opened.structured_content["session_id"]
        # The second worker does not hold it: its call goes to the first.
        routed = await at_second.call_tool("run_code", {"code": "print(x + 1)", "session_id": session})
        assert not routed.is_error, routed
        assert routed.structured_content["stdout"] == "42\n", routed.structured_content
        print(f"ok routed {mode}")
        data = base64.b64encode(b"from the second worker").decode()
        wrote = await at_second.call_tool("write_file", {"session_id": session, "path": "/workspace/w.txt", "data": data})
        assert not wrote.is_error, wrote
        read = await at_first.call_tool("run_code", {"code": "print(open('/workspace/w.txt').read())", "session_id": session})
        assert read.structured_content["stdout"] == "from the second worker\n", read.structured_content
        print(f"ok files routed {mode}")
        # A turn sent again under its key, through the other worker: the
        # answer of the turn that ran, not a second run.
        keyed = {"code": "x += 1\nprint(x)", "session_id": session, "idempotency_key": f"mcp-{mode}-1"}
        ran = await at_second.call_tool("run_code", keyed)
        again = await at_first.call_tool("run_code", keyed)
        assert ran.structured_content["stdout"] == "42\n", ran.structured_content
        assert again.structured_content["stdout"] == "42\n", again.structured_content
        assert again.structured_content.get("replayed") is True, again.structured_content
        assert ran.structured_content["turn"] == again.structured_content["turn"]
        after = await at_second.call_tool("run_code", {"code": "print(x)", "session_id": session})
        assert after.structured_content["stdout"] == "42\n", after.structured_content
        print(f"ok replayed {mode}")
        # A key without a session would open a new one at each call, and
        # run the turn in each: refused.
        try:
            unbound = await at_first.call_tool("run_code", {"code": "1", "idempotency_key": f"mcp-{mode}-2"})
        except Exception as e:
            unbound = e
        assert isinstance(unbound, Exception) or unbound.is_error, unbound
        assert "needs `session_id`" in str(unbound) or "needs `session_id`" in str(getattr(unbound, "content", "")), unbound
        print(f"ok key needs a session {mode}")
        await at_second.call_tool("close_session", {"session_id": session})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], "auto"))
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], "legacy"))
