"""Drives `mimobox serve`'s MCP endpoint (streamable HTTP, /mcp) with the
official MCP Python SDK (PyPI `mcp`), as a remote agent would.

Usage: python3 mcp_http.py BASE_URL ALICE_TOKEN BOB_TOKEN

Prints one `ok NAME` line per check that held; any failure raises (exit 1).
"""

import asyncio
import base64
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def connect(url, token, mode):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, read_timeout_seconds=300, mode=mode)


def text_of(result):
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def main(base, alice, bob, mode):
    url = f"{base}/mcp"
    async with connect(url, alice, mode) as client:
        print(f"ok protocol {client.protocol_version}")
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert "run_code" in tools and "read_file" in tools, tools
        first = await client.call_tool("run_code", {"code": "x = 6 * 7\nprint(x)"})
        assert not first.is_error, first
        session = first.structured_content["session_id"]
        again = await client.call_tool("run_code", {"code": "print(x + 1)", "session_id": session})
        assert again.structured_content["stdout"] == "43\n", again.structured_content
        print("ok state kept")
        chart = await client.call_tool(
            "run_code", {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()", "session_id": session}
        )
        images = [b for b in chart.content if getattr(b, "type", "") == "image"]
        assert images and base64.b64decode(images[0].data).startswith(b"\x89PNG"), chart.content
        print("ok figure")
        data = base64.b64encode(b"hello").decode()
        await client.call_tool("write_file", {"session_id": session, "path": "/workspace/h.txt", "data": data})
        read = await client.call_tool("read_file", {"session_id": session, "path": "/workspace/h.txt"})
        assert base64.b64decode(read.structured_content["data"]) == b"hello", read
        print("ok files")
        failed = await client.call_tool("run_code", {"code": "raise ValueError('no')", "session_id": session})
        assert failed.is_error and failed.structured_content["error"]["name"] == "ValueError", failed
        print("ok error turn")

    # Another owner's token reaches nothing of alice's.
    async with connect(url, bob, mode) as client:
        other = await client.call_tool("run_code", {"code": "print(x)", "session_id": session})
        assert other.is_error and "no such session" in text_of(other), other
        print("ok owners apart")

    # No token, a wrong one, and a browser's request are refused.
    async with httpx2.AsyncClient() as http:
        hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        plain = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        for headers in [plain, {**plain, "Authorization": "Bearer wrong"}]:
            response = await http.post(url, json=hello, headers=headers)
            assert response.status_code == 401, response.status_code
        browser = {**plain, "Authorization": f"Bearer {alice}", "Origin": "http://evil.example"}
        response = await http.post(url, json=hello, headers=browser)
        assert response.status_code == 403, (response.status_code, response.text)
        print("ok refused")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], "auto"))
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], "legacy"))
