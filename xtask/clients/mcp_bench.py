"""The MCP row of `cargo xtask bench`: `run_code` of `x = 1` on a live
mimobox session over stdio, against a do-nothing tool of the MCP SDK's own
`MCPServer` over stdio, both called by the official SDK's client, the two
interleaved in one run.

    python3 mcp_bench.py MIMOBOX PROFILE CALLS

Prints `mimobox_us MEDIAN` and `sdk_us MEDIAN` (microseconds per call).
With `--serve-noop` it is instead the SDK server with the do-nothing tool.
"""

import asyncio
import statistics
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def serve_noop() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("noop")

    @server.tool()
    def noop(code: str) -> str:
        """Does nothing."""
        return ""

    server.run()


async def timed(session: ClientSession, name: str, arguments: dict) -> float:
    started = time.perf_counter()
    result = await session.call_tool(name, arguments)
    elapsed = time.perf_counter() - started
    if result.is_error:
        raise SystemExit(f"{name} failed: {result.content}")
    return elapsed


async def main(mimobox: str, profile: str, calls: int) -> None:
    ours = StdioServerParameters(command=mimobox, args=["mcp", "--profile", f"python-sci={profile}"])
    theirs = StdioServerParameters(command=sys.executable, args=[__file__, "--serve-noop"])
    async with stdio_client(ours) as (our_read, our_write), stdio_client(theirs) as (their_read, their_write):
        async with ClientSession(our_read, our_write) as mine, ClientSession(their_read, their_write) as sdk:
            await mine.initialize()
            await sdk.initialize()
            opened = await mine.call_tool("create_session", {})
            session_id = opened.structured_content["session_id"]
            run = {"code": "x = 1", "session_id": session_id}
            for _ in range(20):
                await timed(mine, "run_code", run)
                await timed(sdk, "noop", {"code": "x = 1"})
            ours_s, theirs_s = [], []
            for _ in range(calls):
                ours_s.append(await timed(mine, "run_code", run))
                theirs_s.append(await timed(sdk, "noop", {"code": "x = 1"}))
    print(f"mimobox_us {statistics.median(ours_s) * 1e6:.1f}")
    print(f"sdk_us {statistics.median(theirs_s) * 1e6:.1f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-noop"]:
        serve_noop()
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
