"""Drives `mimobox mcp` with the official MCP Python SDK (PyPI `mcp`) over
stdio, as an agent's MCP client would, and checks every answer.

Usage: python3 mcp_stdio.py MIMOBOX PROFILE_FILE

Prints one `ok NAME` line per check that held; any failure raises (exit 1).
"""

import asyncio
import base64
import os
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters


def text_of(result):
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def main(binary, profile, mode, expected_version):
    env = {key: os.environ[key] for key in ("MIMOBOX_CACHE_DIR", "TMPDIR", "HOME", "PATH") if key in os.environ}
    server = StdioServerParameters(command=binary, args=["mcp", "--profile", f"python={profile}"], env=env)
    async with Client(server, read_timeout_seconds=600, mode=mode) as client:
        assert client.protocol_version == expected_version, client.protocol_version
        print(f"ok protocol {expected_version}")
        tools = await client.list_tools()
        names = sorted(tool.name for tool in tools.tools)
        assert names == sorted(
            ["run_code", "create_session", "close_session", "write_file", "read_file", "list_files", "list_profiles"]
        ), names
        for tool in tools.tools:
            assert tool.input_schema["type"] == "object", tool
            assert tool.output_schema is not None, tool.name
        print("ok tools")

        first = await client.call_tool("run_code", {"code": "x = 6 * 7\nprint(x)"})
        assert not first.is_error, first
        answer = first.structured_content
        session = answer["session_id"]
        assert len(session) == 32, answer
        assert answer["stdout"] == "42\n" and answer["turn"] == 1 and answer["alive"], answer
        assert "42" in text_of(first)
        print("ok new session")

        again = await client.call_tool("run_code", {"code": "x + 1", "session_id": session})
        assert not again.is_error, again
        assert again.structured_content["turn"] == 2
        assert again.structured_content["results"][0]["text/plain"] == "43", again.structured_content
        print("ok state kept")

        chart = await client.call_tool(
            "run_code",
            {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()", "session_id": session},
        )
        assert not chart.is_error, chart
        images = [block for block in chart.content if getattr(block, "type", "") == "image"]
        assert len(images) == 1 and images[0].mime_type == "image/png", chart.content
        assert base64.b64decode(images[0].data).startswith(b"\x89PNG"), "not a PNG"
        print("ok figure")

        data = base64.b64encode("a,b\n1,2\n3,4\n".encode()).decode()
        written = await client.call_tool(
            "write_file", {"session_id": session, "path": "/workspace/in.csv", "data": data}
        )
        assert not written.is_error and written.structured_content["bytes"] == 12, written
        ran = await client.call_tool(
            "run_code",
            {
                "code": "import pandas\ndf = pandas.read_csv('in.csv')\ndf.sum().to_csv('/workspace/out.csv')",
                "session_id": session,
            },
        )
        assert not ran.is_error, ran
        read = await client.call_tool("read_file", {"session_id": session, "path": "/workspace/out.csv"})
        assert not read.is_error, read
        assert base64.b64decode(read.structured_content["data"]) == b",0\na,4\nb,6\n", read.structured_content
        listed = await client.call_tool("list_files", {"session_id": session, "path": "/workspace"})
        assert sorted(e["name"] for e in listed.structured_content["entries"]) == ["in.csv", "out.csv"], listed
        print("ok files")

        failed = await client.call_tool("run_code", {"code": "1 / 0", "session_id": session})
        assert failed.is_error, failed
        assert failed.structured_content["error"]["name"] == "ZeroDivisionError", failed.structured_content
        assert "ZeroDivisionError" in text_of(failed)
        assert failed.structured_content["alive"], "an exception does not end the session"
        print("ok error turn")

        escape = await client.call_tool("read_file", {"session_id": session, "path": "/workspace/../../etc/passwd"})
        assert escape.is_error, escape
        print("ok path refused")

        # A client passes no limit, path or mount: an argument the tool does
        # not take is refused, and nothing runs.
        try:
            smuggled = await client.call_tool("run_code", {"code": "y = 1", "session_id": session, "memory_limit_mb": 99999})
        except Exception:
            smuggled = None
        assert smuggled is None or smuggled.is_error, smuggled
        probe = await client.call_tool("run_code", {"code": "'y' in globals()", "session_id": session})
        assert probe.structured_content["results"][0]["text/plain"] == "False", probe.structured_content
        print("ok extra arguments refused")

        profiles = await client.call_tool("list_profiles", {})
        assert profiles.structured_content == {"profiles": ["python"], "default": "python"}, profiles
        closed = await client.call_tool("close_session", {"session_id": session})
        assert closed.structured_content == {"closed": True}, closed
        gone = await client.call_tool("run_code", {"code": "x", "session_id": session})
        assert gone.is_error and "no such session" in text_of(gone), gone
        other = await client.call_tool("run_code", {"code": "x", "session_id": "0" * 32})
        assert other.is_error and text_of(other) == text_of(gone), "an unknown id reads as a closed one"
        print("ok close")


if __name__ == "__main__":
    # The current revision (discovered), then a client of the previous one
    # (the initialize handshake).
    asyncio.run(main(sys.argv[1], sys.argv[2], "auto", "2026-07-28"))
    asyncio.run(main(sys.argv[1], sys.argv[2], "legacy", "2025-11-25"))
