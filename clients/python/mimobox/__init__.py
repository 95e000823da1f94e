"""A client for mimobox, shaped like e2b's code-interpreter SDK.

    from mimobox import Sandbox

    with Sandbox(url="http://127.0.0.1:8800", token="...", profile="python-sci") as sbx:
        execution = sbx.run_code("import math\\nmath.pi")
        print(execution.results[0].text)      # 3.141592653589793
        sbx.files.write("/workspace/data.csv", b"a,b\\n1,2\\n")
        print(sbx.files.read("/workspace/data.csv"))

Without a `url`, `Sandbox(profile="profiles/python-sci.toml")` runs a local
session itself, by starting `mimobox session` and speaking its JSON lines,
with the same API.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import httpx

__all__ = ["Sandbox", "Execution", "Result", "Logs", "ExecutionError", "Files", "EntryInfo", "SandboxError"]


class SandboxError(Exception):
    """A call mimobox refused, with its reason (and HTTP status, if any)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Result:
    """One result of a turn (a value, a table, a figure): its MIME bundle."""

    data: Dict[str, Any]

    def _get(self, mime: str) -> Optional[Any]:
        return self.data.get(mime)

    @property
    def text(self) -> Optional[str]:
        return self._get("text/plain")

    @property
    def html(self) -> Optional[str]:
        return self._get("text/html")

    @property
    def markdown(self) -> Optional[str]:
        return self._get("text/markdown")

    @property
    def png(self) -> Optional[str]:
        """The PNG, base64-encoded (as e2b gives it)."""
        return self._get("image/png")

    @property
    def svg(self) -> Optional[str]:
        return self._get("image/svg+xml")

    @property
    def jpeg(self) -> Optional[str]:
        return self._get("image/jpeg")

    @property
    def json(self) -> Optional[Any]:
        return self._get("application/json")

    @property
    def latex(self) -> Optional[str]:
        return self._get("text/latex")

    def formats(self) -> List[str]:
        return list(self.data)


@dataclass
class Logs:
    """What the turn printed, in chunks as they came."""

    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)


@dataclass
class ExecutionError:
    """The exception a turn raised."""

    name: str
    value: str
    traceback: List[str]


@dataclass
class Execution:
    """What one `run_code` produced."""

    results: List[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: Optional[ExecutionError] = None
    execution_count: int = 0
    #: The whole answer object (outcome, limits hit, timings...).
    raw: Dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> Optional[str]:
        """The text of the last result, as e2b's `Execution.text`."""
        for result in reversed(self.results):
            if result.text is not None:
                return result.text
        return None


@dataclass
class EntryInfo:
    """One entry of a directory listing."""

    name: str
    kind: str
    size: int


def _error_of(value: Optional[Dict[str, Any]]) -> Optional[ExecutionError]:
    if not value:
        return None
    return ExecutionError(value.get("name", ""), value.get("value", ""), list(value.get("traceback", [])))


def _execution_of(answer: Dict[str, Any], logs: Optional[Logs] = None) -> Execution:
    if logs is None:
        logs = Logs()
        if answer.get("stdout"):
            logs.stdout.append(answer["stdout"])
        if answer.get("stderr"):
            logs.stderr.append(answer["stderr"])
    error = _error_of(answer.get("error"))
    if error is None and answer.get("outcome") not in (None, "exited"):
        error = ExecutionError(answer["outcome"], f"the turn stopped: {answer['outcome']}", [])
    return Execution(
        results=[Result(bundle) for bundle in answer.get("results", [])],
        logs=logs,
        error=error,
        execution_count=answer.get("turn", 0),
        raw=answer,
    )


class Files:
    """The session's files: `write`, `read`, `list`."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def write(self, path: str, data: Union[bytes, str]) -> int:
        """Writes the whole file at `path` (under /workspace or /tmp); the bytes written."""
        if isinstance(data, str):
            data = data.encode()
        return self._sandbox._backend.write_file(path, data)

    def read(self, path: str) -> bytes:
        """The bytes of the file at `path`."""
        return self._sandbox._backend.read_file(path)

    def list(self, path: str = "/workspace") -> List[EntryInfo]:
        """The entries of the directory at `path`."""
        listing = self._sandbox._backend.list_files(path)
        return [EntryInfo(e["name"], e["kind"], e["bytes"]) for e in listing["entries"]]


class _Http:
    def __init__(
        self,
        url: str,
        token: str,
        profile: Optional[str],
        timeout: float,
        retries: int,
        transport: Optional[httpx.BaseTransport],
    ) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )
        self._retries = retries
        body = {} if profile is None else {"profile": profile}
        self.id = self._json("POST", "/v1/sessions", json=body)["id"]

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SandboxError(message, response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._check(self._client.request(method, path, **kwargs)).json()

    def run(self, code: str, stream: bool, timeout: Optional[float]) -> Iterator[Dict[str, Any]]:
        body: Dict[str, Any] = {"code": code, "stream": stream}
        if timeout is not None:
            body["timeout"] = timeout
        path = f"/v1/sessions/{self.id}/execute"
        # Every attempt of this turn goes under one key: one whose answer
        # was lost on the way is answered from the server's record when it
        # is sent again, not run twice.
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        if not stream:
            answer = self._json_again(path, body, headers)
            answer["type"] = "end"
            yield answer
            return
        with self._client.stream("POST", path, json=body, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def _json_again(self, path: str, body: Dict[str, Any], headers: Dict[str, str]) -> Any:
        """POSTs `body`, sending it again (up to `retries` more times, with a
        growing pause) when the connection fails or the server is briefly
        unavailable (503: a session moving between workers, a drain)."""
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._client.post(path, json=body, headers=headers)
            except httpx.TransportError:
                if last:
                    raise
            else:
                if response.status_code != 503 or last:
                    return self._check(response).json()
            time.sleep(min(0.05 * 2**attempt, 2.0))
        raise SandboxError("no answer")  # not reached

    def write_file(self, path: str, data: bytes) -> int:
        return self._json("PUT", f"/v1/sessions/{self.id}/files/{path.lstrip('/')}", content=data)["bytes"]

    def read_file(self, path: str) -> bytes:
        return self._check(self._client.get(f"/v1/sessions/{self.id}/files/{path.lstrip('/')}")).content

    def list_files(self, path: str) -> Dict[str, Any]:
        return self._json("GET", f"/v1/sessions/{self.id}/files", params={"path": path})

    def close(self) -> None:
        try:
            response = self._client.delete(f"/v1/sessions/{self.id}")
            if response.status_code not in (204, 404):
                self._check(response)
        finally:
            self._client.close()


class _Local:
    def __init__(self, profile: str, binary: Optional[str], env: Optional[Dict[str, str]]) -> None:
        binary = binary or shutil.which("mimobox")
        if binary is None:
            raise SandboxError("mimobox is not on PATH; pass binary=")
        self._process = subprocess.Popen(
            [binary, "session", "--profile", profile],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.id = None

    def _send(self, request: Dict[str, Any]) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise SandboxError("the local session has ended") from None

    def _line(self) -> Dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise SandboxError("the local session has ended")
        return json.loads(line)

    def _answer(self, request: Dict[str, Any]) -> Dict[str, Any]:
        self._send(request)
        answer = self._line()
        if "error" in answer and "outcome" not in answer:
            raise SandboxError(answer["error"])
        return answer

    def run(self, code: str, stream: bool, timeout: Optional[float]) -> Iterator[Dict[str, Any]]:
        if timeout is not None:
            raise SandboxError("a local session takes its timeout from its profile")
        self._send({"code": code, "stream": stream})
        while True:
            line = self._line()
            if not stream:
                line["type"] = "end"
            yield line
            if line.get("type") == "end":
                return

    def write_file(self, path: str, data: bytes) -> int:
        request = {"op": "write_file", "path": path, "data": base64.b64encode(data).decode()}
        return self._answer(request)["bytes"]

    def read_file(self, path: str) -> bytes:
        return base64.b64decode(self._answer({"op": "read_file", "path": path})["data"])

    def list_files(self, path: str) -> Dict[str, Any]:
        return self._answer({"op": "list_files", "path": path})

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


class Sandbox:
    """A live interpreter session: over `mimobox serve` (with `url` and
    `token`), or a local `mimobox session` (without `url`; `profile` is then
    the profile's file)."""

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        profile: Optional[str] = None,
        *,
        binary: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 300.0,
        retries: int = 3,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        """`retries`: how many more times a turn is sent when its answer is
        lost (a broken connection, a 503), under the same idempotency key so
        that it never runs twice. `transport`: httpx's, for a proxy or a
        test."""
        if url is not None:
            if token is None:
                raise SandboxError("a token is needed with a url")
            self._backend: Union[_Http, _Local] = _Http(url, token, profile, timeout, retries, transport)
        else:
            if profile is None:
                raise SandboxError("a local sandbox needs profile=PATH (or pass url=)")
            self._backend = _Local(profile, binary, env)
        self.files = Files(self)

    @property
    def sandbox_id(self) -> Optional[str]:
        """The session's id (over HTTP)."""
        return self._backend.id

    def run_code(
        self,
        code: str,
        on_stdout: Optional[Callable[[str], None]] = None,
        on_stderr: Optional[Callable[[str], None]] = None,
        on_result: Optional[Callable[[Result], None]] = None,
        on_error: Optional[Callable[[ExecutionError], None]] = None,
        timeout: Optional[float] = None,
    ) -> Execution:
        """Runs `code` as the session's next turn; with callbacks, they get
        the output and results as they come."""
        stream = any(c is not None for c in (on_stdout, on_stderr, on_result, on_error))
        logs = Logs()
        for line in self._backend.run(code, stream, timeout):
            kind = line.get("type")
            if kind == "stdout":
                logs.stdout.append(line["text"])
                if on_stdout:
                    on_stdout(line["text"])
            elif kind == "stderr":
                logs.stderr.append(line["text"])
                if on_stderr:
                    on_stderr(line["text"])
            elif kind == "result":
                if on_result:
                    on_result(Result(line["data"]))
            elif kind == "error":
                if on_error:
                    on_error(_error_of(line))  # type: ignore[arg-type]
            elif kind == "end":
                if "outcome" not in line:
                    raise SandboxError(line.get("error", "the turn was refused"))
                return _execution_of(line, logs if stream else None)
        raise SandboxError("the answer ended before the turn did")

    def close(self) -> None:
        """Closes the session (its files are removed)."""
        self._backend.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
