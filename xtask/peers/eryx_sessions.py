"""The peer's side of `cargo xtask bench`'s session rows, run with a Python
that has eryx's binding (`pip install pyeryx==0.11.0`, Python 3.12): a new
session and its first `print(1+1)` (median of 40), a trivial turn `x = 1`
on a live session (median of 2,500 after 500), and the growth of private
memory (RssAnon) per session over N sessions held live after one trivial
turn each. Prints `eryx KEY VALUE` lines."""
import statistics, sys, time
import eryx

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

warm = eryx.Session()
warm.execute("print(1+1)")
opens = []
for _ in range(40):
    t = time.perf_counter()
    s = eryx.Session()
    r = s.execute("print(1+1)")
    opens.append(time.perf_counter() - t)
    assert r.stdout == b"2\n", r.stdout
    del s
live = eryx.Session()
live.execute("x = 0")
turns = []
for _ in range(3000):
    t = time.perf_counter()
    live.execute("x = 1")
    turns.append(time.perf_counter() - t)
count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
before = anon_kib()
held = []
for _ in range(count):
    s = eryx.Session()
    s.execute("x = 1")
    held.append(s)
after = anon_kib()
print(f"eryx open_ms {statistics.median(opens) * 1e3:.3f}")
print(f"eryx turn_us {statistics.median(turns[500:]) * 1e6:.2f}")
print(f"eryx private_kib_per_session {(after - before) / count:.0f}")
