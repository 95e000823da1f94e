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
    import ast
    import base64
    import builtins
    import gc
    import io
    import json
    import linecache
    import re
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

    # The turn path. The reactor's `_run_turn` parses every cell to AST
    # objects and compiles them back, to find its last statement. This one
    # tells from the text, without AST objects, when the last statement is
    # surely no expression (then it compiles the cell as it is), and when it
    # may be one (then it compiles the code before it, and parses the last
    # statement alone); it leaves the rest to the reactor's own route. It
    # builds the same code objects as the reactor, registers them with
    # linecache alike and runs them in the same order.
    def turn_path(sys, builtins, ast, linecache, re):
        compile_ = builtins.compile
        exec_ = builtins.exec
        eval_ = builtins.eval
        register = linecache._register_code
        Expr = ast.Expr
        Expression = ast.Expression
        only_ast = ast.PyCF_ONLY_AST
        modules = sys.modules

        # Where the last line (before `endpos`) starts that begins, in column 0,
        # with code: a character that is no blank, tab, newline or `#`.
        last_line = re.compile(r"(?s).*\n(?=[^ \t#\n])").match
        # Blank lines and comment lines only: no token.
        no_code = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*").fullmatch
        # A statement that starts with a name (or a dotted one) and `=`, an
        # augmented `=` or the `:` of an annotation: no expression statement
        # starts so (`lambda:` aside).
        assignment = re.compile(
            r"(?!lambda(?!\w))[^\W\d]\w*(?:[ \t]*\.[ \t]*[^\W\d]\w*)*[ \t]*"
            r"(?:(?:[-+*/%&|^@]|//|\*\*|>>|<<)?=(?!=)|:(?!=))"
        ).match
        first_word = re.compile(r"[ \t\\\n]*([^\W\d]\w*)").match
        lazy_import = re.compile(r"[ \t\\\n]*lazy[ \t]+(?:import|from)(?!\w)").match
        # Anything of a string, a comment or a bracket.
        special = re.compile(r"[()\[\]{}'\"#]").search
        # The tokens that may hide brackets, `=`, `:`, `;` or `lambda`: strings
        # (triple-quoted too); f- and t-strings of one line whose fields hold no
        # backslash, no brace but pairs around neither brace, quote nor
        # backslash, and no quote but those of strings in the other quote
        # (themselves without brace, quote or backslash); comments. A quote
        # that none of these takes is left in place, and the caller gives up. No
        # string may follow a letter but its own prefix, so that the rest of an
        # f-string that this cannot read is never taken for a string.
        lex = re.compile(
            r"""(?<!\w)(?:[rRbBuU]|[rR][bB]|[bB][rR])?"""
            r"""(?:'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\""""
            r"""|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|"[^"\\\n]*(?:\\.[^"\\\n]*)*")"""
            r"""|(?<!\w)(?:[fFtT][rR]?|[rR][fFtT])"""
            r"""(?:'(?:[^{}\\'\n]|\\[^{}'"\n]|\{\{|\}\}|\{(?:[^{}'"\\\n]|"[^{}'"\\\n]*"|\{[^{}'"\\\n]*\})*\})*'"""
            r"""|"(?:[^{}\\"\n]|\\[^{}'"\n]|\{\{|\}\}|\{(?:[^{}'"\\\n]|'[^{}'"\\\n]*'|\{[^{}'"\\\n]*\})*\})*")"""
            r"""|\#[^\n]*""",
            re.S,
        ).sub
        # An innermost pair of brackets.
        pair = re.compile(r"\([^()\[\]{}]*\)|\[[^()\[\]{}]*\]|\{[^()\[\]{}]*\}").subn
        brackets = re.compile(r"[()\[\]{}]").search
        closer = re.compile(r"[)\]}]").search
        # What no expression statement has outside brackets but in a lambda: the
        # `=` of an assignment (plain, augmented or annotated; not of `==`,
        # `!=`, `<=`, `>=` or `:=`) and the `:` of an annotation or a header.
        statement_mark = re.compile(r"(?<![=!<>:])=(?!=)|(?:<<|>>)=|:(?!=)").search
        has_lambda = re.compile(r"(?<!\w)lambda(?!\w)").search
        # What may follow a `;` that ends the cell's last statement.
        after_semicolon = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*(?:#[^\n]*)?").fullmatch
        compound = frozenset("def class if for while try with async elif else except finally".split())
        simple = frozenset("import from del pass global nonlocal raise assert return break continue".split())
        # What `classify` tells of the cell's last top-level statement.
        SURE = "no expression"
        UNSURE = "no expression, if it starts there"
        INSIDE = "starts earlier"
        EXPR = "maybe an expression"
        UNKNOWN = "cannot be read"

        def string_or_comment(found):
            return "" if found.group()[0] == "#" else "S"

        def top_level(tail, head):
            """`tail` without its strings, comments and bracketed parts, or None
            when that cannot be told for sure. When `head` (the code before
            `tail`) is given, also INSIDE when `tail` starts (or may start) inside
            a string or brackets, and None when that cannot be told."""
            if special(tail) is None:
                # No string, comment or bracket: none is open where `tail`
                # starts either (it would end in `tail`).
                return tail
            if head is not None and ("'''" in tail or '"""' in tail) and ("'''" in head or '"""' in head):
                # A string might be open where `tail` starts: `head` is read
                # from the cell's start, where none is.
                code = lex(" ", head)
                if "'" in code or '"' in code:
                    # `tail` starts in a string when the whole cell reads well and
                    # `head` does not (the string that `head` cannot finish).
                    whole = lex(" ", head + tail)
                    return None if "'" in whole or '"' in whole else INSIDE
                opened = code.count("(") + code.count("[") + code.count("{")
                closed = code.count(")") + code.count("]") + code.count("}")
                if opened != closed:
                    return INSIDE if opened > closed else None
            code = lex(" ", tail)
            if "'" in code or '"' in code:
                return None
            for _ in range(100):
                code, n = pair("", code)
                if not n:
                    break
            else:
                return None
            if brackets(code):
                # A bracket closed here and opened before `tail` (or a cell that
                # does not compile).
                return INSIDE if head is not None and closer(code) else None
            return code

        def is_statement(code, word):
            """Whether `code` (one simple statement, read by `top_level`) is
            surely no expression statement; `word` is its first word."""
            if word in simple or word == "lazy" and lazy_import(code):
                return True
            mark = statement_mark(code)
            if mark is None:
                return False
            if "lambda" not in code:
                return True
            lam = has_lambda(code)
            return lam is None or mark.start() < lam.start()

        def classify(tail, head):
            """What the statement that `tail` starts is (see above). `head` is the
            code before `tail`, or None when there is none: `tail` then starts
            the cell's first statement."""
            word = first_word(tail)
            word = word.group(1) if word else tail[:1]
            if word in compound or word == "@":
                if head is None:
                    return SURE
                code = top_level(tail, head)
                return INSIDE if code is INSIDE else UNSURE if code is None else SURE
            keyword = word in simple or word == "lazy" and lazy_import(tail)
            if keyword and head is None and ";" not in tail:
                return SURE
            code = top_level(tail, head)
            if code is INSIDE:
                return INSIDE
            if code is None:
                return UNSURE if keyword else UNKNOWN
            if ";" not in code:
                return SURE if is_statement(code, word) else EXPR
            # The statements between `;`, each string a word, so that a
            # statement that is a string is not taken for nothing.
            code = lex(string_or_comment, tail) if special(tail) is not None else tail
            for _ in range(100):
                code, n = pair("", code)
                if not n:
                    break
            parts = [part for part in code.split(";") if part.strip(" \t\\\n")]
            if not parts:
                return UNKNOWN
            last = parts[-1]
            if len(parts) > 1:
                word = first_word(last)
                word = word.group(1) if word else ""
            if is_statement(last, word):
                return SURE
            # An expression after a `;` is not at the start of a line, where
            # this can compile it alone.
            return EXPR if len(parts) == 1 else UNSURE

        def plan(text, name):
            if "\r" in text:
                # Lines that end with "\r\n" compile as if they ended with "\n";
                # a lone "\r" ends a line too: left to the reactor's route.
                if text.count("\r") != text.count("\r\n"):
                    return ("ast",)
                text = text.replace("\r\n", "\n")
            if "\f" in text:
                return ("ast",)
            found = last_line(text)
            start = found.end() if found else 0
            tail = text[start:] if start else text
            # The common cell whose last statement is an assignment to a name:
            # decided at once when it is the only statement, or when no string,
            # comment or bracket can make its line go on from an earlier one.
            if (
                assignment(tail)
                and ";" not in tail
                and (not start or special(tail) is None and not text.endswith("\\\n", 0, start) or no_code(text, 0, start))
            ):
                try:
                    return ("exec", compile_(text, name, "exec"))
                except Exception:
                    return ("ast",)
            for _ in range(16):
                start = found.end() if found else 0
                tail = text[start:]
                if not tail or tail[0] in " \t#\n":
                    # No line starts with code: no statement (or no valid cell).
                    kind = SURE
                    break
                head = text[:start]
                if not start or no_code(head):
                    head = None
                    kind = classify(tail, None)
                elif head.endswith("\\\n"):
                    # The line goes on from the one before, unless that backslash
                    # is in a comment.
                    kind = INSIDE if "#" not in head[head.rfind("\n", 0, -1) + 1 :] else UNSURE
                else:
                    kind = classify(tail, head)
                if kind is not INSIDE:
                    break
                # The line goes on from an earlier one: try the line before.
                found = last_line(text, 0, start)
            else:
                return ("ast",)
            if kind is SURE:
                try:
                    return ("exec", compile_(text, name, "exec"))
                except Exception:
                    return ("ast",)
            if kind is not EXPR and kind is not UNKNOWN:
                return ("ast",)
            # The last statement may be an expression, and is one when the code
            # before it compiles alone and it parses alone as one (a `;` that
            # ends it aside). `tail` is parsed first when it could not be read,
            # as it may well be no expression; otherwise last, as the reactor
            # parses the cell in order.
            semicolon = tail.rfind(";")
            if semicolon < 0 or not after_semicolon(tail, semicolon + 1):
                semicolon = len(tail)
            expr = "\n" * text.count("\n", 0, start) + tail[:semicolon]
            try:
                if kind is UNKNOWN:
                    expr = compile_(expr, name, "eval", only_ast)
                body = compile_(head, name, "exec") if head is not None else None
                if kind is EXPR:
                    expr = compile_(expr, name, "eval", only_ast)
            except Exception:
                return ("ast",)
            return ("split", body, expr)

        def run_turn(text, name):
            """Run a turn's source in __main__, echoing a final expression as the
            interactive interpreter does: the reactor's `_run_turn`, which builds
            AST objects of the last statement only, and of none when it is no
            expression."""
            try:
                how = plan(text, name)
            except Exception:
                how = ("ast",)
            main = modules["__main__"].__dict__
            if how[0] == "exec":
                register(how[1], text, name)
                exec_(how[1], main)
            elif how[0] == "split":
                if how[1] is not None:
                    register(how[1], text, name)
                    exec_(how[1], main)
                expr = compile_(how[2], name, "eval")
                register(expr, text, name)
                sys.displayhook(eval_(expr, main))
            else:
                # The reactor's own route, step for step.
                tree = ast.parse(text, name, "exec")
                last = None
                if tree.body and isinstance(tree.body[-1], Expr):
                    last = Expression(tree.body.pop().value)
                code = compile_(tree, name, "exec")
                register(code, text, name)
                exec_(code, main)
                if last is not None:
                    expr = compile_(last, name, "eval")
                    register(expr, text, name)
                    sys.displayhook(eval_(expr, main))

        return run_turn

    run_turn = turn_path(sys, builtins, ast, linecache, re)
    report = _reactor._report

    def turn(text, name):
        try:
            return run_turn(text, name)
        finally:
            show_figures()

    def report_error(exc, script):
        # Frames of the reactor, of the turn path and of the wrapper above are
        # the host's machinery, not the caller's code.
        tb = exc.__traceback__
        while tb is not None and (
            tb.tb_frame.f_code is turn.__code__
            or tb.tb_frame.f_code is run_turn.__code__
            or tb.tb_frame.f_code.co_filename == "<reactor>"
        ):
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
