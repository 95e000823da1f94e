# Display hooks for CPython sessions of mimobox, in the manner of Jupyter.
#
# Runs once per checkpoint, at the start of the profile's preload
# (`session.setup_file`). From then on every turn returns, beside its
# output:
#   - the value of its last expression, as a MIME bundle (text/plain, and
#     text/html, image/png, ... where the object has `_repr_*_` methods);
#   - each matplotlib figure shown with plt.show() or left open at the end
#     of the turn, as image/png and text/plain (and closed afterwards);
#   - what it passes to display(obj), a builtin as in IPython;
#   - the exception it raised, as name, value and traceback.
# Each is one frame through the host-call door (`_host.call`); the host
# bounds their size and number, and nothing printed ever becomes one.
#
# Everything is defined inside one function, so that the session's
# `__main__` gets only `display` (as a builtin) and nothing the caller's
# code could rebind to break the hooks.


def _mimobox_setup():
    import base64
    import builtins
    import gc
    import io
    import json
    import sys
    import traceback

    import _host
    import _reactor

    # Text values are cut to this many characters before they are encoded,
    # so that displaying a huge string never builds a huge frame here.
    max_text = 1 << 20
    reprs = (
        ("text/html", "_repr_html_"),
        ("text/markdown", "_repr_markdown_"),
        ("text/latex", "_repr_latex_"),
        ("image/svg+xml", "_repr_svg_"),
        ("image/png", "_repr_png_"),
        ("image/jpeg", "_repr_jpeg_"),
        ("application/json", "_repr_json_"),
    )
    binary = ("image/png", "image/jpeg")
    # One encoder, built once: json.dumps with options builds a new one
    # for every call, which costs more than the rest of a result.
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    # Values of these types have nothing but their repr to show.
    plain_types = (int, float, complex, bool, str, bytes, type(None), range)
    # Whether the bundle being built was cut; the frame then says so, and
    # the host flags the turn.
    cut_state = {"cut": False}

    def send(op, fields):
        """Sends one frame; False when the host takes no more this turn."""
        # Output written so far goes first, so that a stream keeps its order.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        frame = {"v": 1, "op": op}
        frame.update(fields)
        try:
            text = encoder.encode(frame)
            _host.call(text.encode("utf-8", "replace"))
            return True
        except Exception:
            return False

    def send_bundle(bundle):
        fields = {"data": bundle}
        if cut_state["cut"]:
            fields["truncated"] = True
            cut_state["cut"] = False
        return send("display", fields)

    def cut(text):
        if len(text) > max_text:
            cut_state["cut"] = True
            return text[:max_text] + "…"
        return text

    def plain(obj):
        if isinstance(obj, (str, bytes, bytearray)) and len(obj) > max_text:
            cut_state["cut"] = True
            return repr(obj[:max_text]) + "…"
        try:
            return cut(repr(obj))
        except Exception as e:
            return "<repr failed: %s>" % type(e).__name__

    def figure_formats():
        # The formats this turn asks for (PNG always; SVG on request).
        try:
            return json.loads(_host.call(b'{"v":1,"op":"options"}'))["figure_formats"]
        except Exception:
            return ["png"]

    def figure_bundle(figure, formats=("png",)):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        bundle = {
            "image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "text/plain": plain(figure),
        }
        if "svg" in formats:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="svg")
            bundle["image/svg+xml"] = buffer.getvalue().decode("utf-8", "replace")
        return bundle

    def is_figure(obj):
        module = sys.modules.get("matplotlib.figure")
        return module is not None and isinstance(obj, module.Figure)

    def bundle_of(obj):
        if type(obj) in plain_types:
            return {"text/plain": plain(obj)}
        if is_figure(obj):
            return figure_bundle(obj, figure_formats())
        data = {}
        # An object may give its whole bundle at once, as in IPython.
        method = getattr(type(obj), "_repr_mimebundle_", None)
        if callable(method):
            try:
                given = method(obj)
                if isinstance(given, tuple):
                    given = given[0]
                if isinstance(given, dict):
                    for mime, value in given.items():
                        if isinstance(mime, str) and (isinstance(value, str) or mime.endswith("json")):
                            data[mime] = cut(value) if isinstance(value, str) else value
            except Exception:
                data = {}
        for mime, name in reprs:
            if mime in data:
                continue
            method = getattr(type(obj), name, None)
            if not callable(method):
                continue
            try:
                value = method(obj)
            except Exception:
                continue
            if isinstance(value, tuple):
                value = value[0]
            if value is None:
                continue
            if mime in binary:
                if isinstance(value, (bytes, bytearray)):
                    value = base64.b64encode(value).decode("ascii")
                elif not isinstance(value, str):
                    continue
            elif isinstance(value, (bytes, bytearray)):
                value = cut(bytes(value).decode("utf-8", "replace"))
            elif mime == "application/json":
                try:
                    json.dumps(value)
                except Exception:
                    continue
            else:
                value = cut(str(value))
            data[mime] = value
        data.setdefault("text/plain", plain(obj))
        return data

    def display_one(obj):
        try:
            bundle = bundle_of(obj)
        except Exception as e:
            bundle = {"text/plain": "<display failed: %s>" % type(e).__name__}
        send_bundle(bundle)

    def display(*objs, **_options):
        """Shows each object as a display result of this turn."""
        for obj in objs:
            display_one(obj)

    def displayhook(value):
        if value is None:
            return
        builtins._ = value
        display_one(value)

    def show_figures():
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        try:
            numbers = pyplot.get_fignums()
        except Exception:
            return
        # Most turns draw nothing, and cost nothing more here.
        if not numbers:
            return
        # Drawn in order until the host takes no more; all are closed.
        formats = figure_formats()
        for number in numbers:
            manager = pyplot._pylab_helpers.Gcf.get_fig_manager(number)
            if manager is None:
                continue
            try:
                bundle = figure_bundle(manager.canvas.figure, formats)
            except Exception as e:
                bundle = {"text/plain": "<figure failed: %s: %s>" % (type(e).__name__, cut(str(e)))}
            if not send_bundle(bundle):
                break
        pyplot.close("all")

    def show(*_args, **_kwargs):
        show_figures()

    run_turn = _reactor._run_turn
    report = _reactor._report

    def turn(text, name):
        try:
            return run_turn(text, name)
        finally:
            show_figures()

    def report_error(exc, script):
        # Frames of the reactor and of the wrapper above are the host's
        # machinery, not the caller's code.
        tb = exc.__traceback__
        while tb is not None and (tb.tb_frame.f_code is turn.__code__ or tb.tb_frame.f_code.co_filename == "<reactor>"):
            tb = tb.tb_next
        exc.__traceback__ = tb
        try:
            send("error", error_fields(exc, tb))
        except Exception:
            pass
        return report(exc, script)

    def error_fields(exc, tb):
        # Cut to fit the host's bound on an error frame (256 KiB): the
        # value to 16,000 characters, each traceback line to 4,000, and the
        # traceback to its last lines that fit in 200,000 bytes.
        try:
            value = str(exc)
        except Exception:
            value = "<str() of the exception failed>"
        if len(value) > 16000:
            value = value[:16000] + "…"
        try:
            lines = "".join(traceback.format_exception(type(exc), exc, tb)).splitlines()
        except Exception:
            lines = ["%s: %s" % (type(exc).__name__, value)]
        lines = [line if len(line) <= 4000 else line[:4000] + "…" for line in lines[-1000:]]
        kept, size = [], 0
        for line in reversed(lines):
            size += len(line.encode("utf-8", "replace")) + 8
            if size > 200000:
                break
            kept.append(line)
        kept.reverse()
        return {"name": type(exc).__name__[:200], "value": value, "traceback": kept}

    # Each line reaches the host as it is printed, so that stdout, stderr
    # and results stay in the order they were made.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)

    _reactor._run_turn = turn
    _reactor._report = report_error

    def open_session(argv_and_env):
        # What a session opened from the checkpoint runs first (the
        # profile's `restore`): `_reactor._setup` gives it its own argv,
        # environment and random seeds. It reseeds numpy's global generator
        # with `numpy.random.seed()`, whose seeding from fresh entropy
        # takes about 4 ms here; the generator's whole state is set from
        # the system's entropy instead (624 random words: as unpredictable,
        # a tenth of the time).
        import os

        nprandom = sys.modules.get("numpy.random")
        original = getattr(nprandom, "seed", None)
        if original is not None:

            def seed(seed=None):
                if seed is not None:
                    return original(seed)
                key = sys.modules["numpy"].frombuffer(os.urandom(624 * 4), dtype="uint32")
                nprandom.set_state(("MT19937", key, 624, 0, 0.0))

            nprandom.seed = seed
        try:
            _reactor._setup(argv_and_env)
        finally:
            if original is not None:
                nprandom.seed = original
        _reactor._turns = 0
        os.chdir("/workspace")

    _reactor._mimobox_open = open_session
    sys.displayhook = displayhook
    builtins.display = display

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.font_manager
    import matplotlib.pyplot

    matplotlib.pyplot.show = show
    # A first figure, drawn and thrown away, loads the renderer and the
    # fonts into the checkpoint, so that a session's first chart is fast.
    figure = matplotlib.pyplot.figure()
    figure.gca().plot([0, 1], [0, 1])
    figure.gca().set_title("warm-up")
    figure_bundle(figure)
    matplotlib.pyplot.close("all")
    del figure
    # matplotlib's font cache holds the font files open, and a checkpoint
    # carries no open files: they are let go (what was parsed from them
    # stays; reopening one later costs little).
    matplotlib.font_manager._get_font.cache_clear()
    gc.collect()


_mimobox_setup()
del _mimobox_setup
