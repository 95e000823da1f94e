"""Drives the repository's Python client (`pip install ./clients/python`)
against a live `mimobox serve` and in its local mode (a `mimobox session`
it starts itself): the same calls, the same answers.

Usage: python3 python_client.py BASE_URL TOKEN MIMOBOX PROFILE_FILE
"""

import sys

import httpx

from mimobox import Sandbox, SandboxError


class LoseFirstAnswer(httpx.HTTPTransport):
    """Sends each request for real, but loses the first turn's answer on the
    way back, as a connection that breaks after the server answered."""

    def __init__(self):
        super().__init__()
        self.lost = 0
        self.keys = []

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith("/execute"):
            self.keys.append(request.headers.get("idempotency-key"))
            if self.lost == 0:
                self.lost += 1
                response.read()
                response.close()
                raise httpx.ReadError("the answer was lost", request=request)
        return response


def exercise(sbx, mode):
    execution = sbx.run_code("x = 6 * 7\nprint(x)")
    assert execution.logs.stdout == ["42\n"], execution.logs
    assert execution.error is None and execution.results == [], execution
    assert sbx.run_code("x + 1").text == "43"

    seen = {"stdout": [], "stderr": [], "results": []}
    streamed = sbx.run_code(
        "print('a')\nimport sys; print('b', file=sys.stderr)\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n1 + 1",
        on_stdout=seen["stdout"].append,
        on_stderr=seen["stderr"].append,
        on_result=seen["results"].append,
    )
    assert seen["stdout"] == ["a\n"] and seen["stderr"] == ["b\n"], seen
    assert [r.png is not None for r in seen["results"]] == [True, False], seen["results"]
    assert streamed.results[-1].text == "2" and streamed.logs.stdout == ["a\n"], streamed
    assert streamed.results[0].png and "image/png" in streamed.results[0].formats()

    failed = sbx.run_code("{}['missing']")
    assert failed.error is not None and failed.error.name == "KeyError", failed
    assert any("KeyError" in line for line in failed.error.traceback), failed.error

    assert sbx.files.write("/workspace/in.txt", b"hello") == 5
    sbx.run_code("open('out.txt', 'w').write(open('in.txt').read().upper())")
    assert sbx.files.read("/workspace/out.txt") == b"HELLO"
    names = sorted(entry.name for entry in sbx.files.list("/workspace"))
    assert names == ["in.txt", "out.txt"], names
    try:
        sbx.files.read("/workspace/../../etc/passwd")
        raise AssertionError("a path out of the workspace was read")
    except SandboxError:
        pass
    print(f"ok {mode}")


def main(base, token, binary, profile):
    with Sandbox(url=base, token=token) as sbx:
        assert len(sbx.sandbox_id) == 32
        exercise(sbx, "http")
    try:
        Sandbox(url=base, token="wrong")
        raise AssertionError("a wrong token opened a session")
    except SandboxError as e:
        assert e.status == 401, e.status
    print("ok wrong token")
    # A turn whose answer is lost is sent again under the same key, and
    # runs once.
    lossy = LoseFirstAnswer()
    with Sandbox(url=base, token=token, transport=lossy) as sbx:
        counted = sbx.run_code("n = globals().get('n', 0) + 1\nprint(n)")
        assert counted.logs.stdout == ["1\n"], counted.logs
        assert lossy.lost == 1 and len(lossy.keys) == 2 and lossy.keys[0] == lossy.keys[1], lossy.keys
        assert sbx.run_code("print(n)").logs.stdout == ["1\n"], "the lost turn ran twice"
        assert len(set(lossy.keys)) == 2, "each turn has its own key"
    print("ok sent again")
    with Sandbox(profile=profile, binary=binary) as sbx:
        exercise(sbx, "local")


if __name__ == "__main__":
    main(*sys.argv[1:5])
