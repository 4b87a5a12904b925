"""The documentation's command lines parse with the programs' own argparse parsers, so an option
renamed or removed in the code cannot live on in README.md or docs/*.md.

Checked: every invocation of ``edgecodec`` (also ``.venv/bin/edgecodec``, ``python -m edgecodec[.cli]``,
``torchrun ... -m edgecodec.cli``), ``python -m edgecodec.MODULE`` and ``[python] benchmarks/NAME.py``
/ ``scripts/NAME.py`` (those with an argparse parser), in fenced code blocks (every line, and every
command of a line: ``&&``, ``;``, pipes) and in inline code spans that start with such a program.
Nothing runs: each line goes through the parser the program builds (cli.build_parser(); a script's
``main`` stopped at ``parse_args``, as tests/test_benchmarks.py does) and fails if argparse refuses it.

* Shell syntax: backslash continuations, ``#`` comments, quotes, redirections (``> f``, ``< f``,
  ``2>&1``), environment prefixes (``OMP_NUM_THREADS=2``), ``nice``/``time``/``env``, ``for ... do``.
* Placeholders (FILE, DIR, N, ...) stand for a value: PLACEHOLDERS gives each a sample one, and ``X...``
  (one or more X) is X. An unknown upper-case word is a real argument.
* An inline span is often an excerpt (`edgecodec export onnx`, `edgecodec compress --backend onnx`):
  it is parsed with no argument required, but every option, choice and value in it must be right.
  Fenced lines are whole commands: required arguments count.
* Options may not be abbreviated (argparse would take `--target-s`: a doc should name the option).
* A line that cannot be checked fails unless SKIPPED lists it with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from test_benchmarks import script_parser

REPO = Path(__file__).resolve().parents[1]

# Placeholders the docs write for a value -> a value the parsers accept in that place.
PLACEHOLDERS = {
    "FILE": "photo.png", "DIR": "dir", "RUN": "runs/crb", "IMAGES": "images", "N": "2",
    "ANCHOR": "anchor.json", "TEST": "test.json", "ORIGINAL": "photo.png",
    "LEFT,TOP,WIDTH,HEIGHT": "0,0,64,64",
}

# (document, command as written, as Command.text has it) -> why it is not checked. Empty: every
# documented line parses. A line argparse cannot take as written (an elision "..." where a number
# goes, optional-part syntax "[--x]") goes here with the reason, or better is rewritten.
# A bare "..." standing for arguments (`edgecodec bdrate ... --range 0.15,1`) needs no entry: it
# parses as a positional value, and the options around it are still checked.
SKIPPED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Command:
    doc: str            # path relative to the docs root, e.g. README.md
    line: int           # 1-based line of the command's start
    text: str           # the program's command as written (tokens joined by spaces)
    program: str        # "edgecodec", "module:edgecodec.eval.original", "benchmarks/edge.py", ...
    args: tuple[str, ...]
    inline: bool        # from an inline code span (an excerpt: nothing required)


@dataclass(frozen=True)
class Unreadable:
    """A line naming a program that the extraction could not split into arguments."""
    doc: str
    line: int
    text: str
    why: str


# --- extraction ----------------------------------------------------------------------------------
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
NOT_SHELL = {"python", "py", "yaml", "yml", "json", "toml", "text", "diff", "ini", "html", "js", "javascript"}
SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
MENTIONS_PROGRAM = re.compile(r"(^|[\s;&|(])((\S*/bin/)?edgecodec(\s|$)|-m\s+edgecodec"
                              r"|(\S*/)?(benchmarks|scripts)/[\w/]+\.py)")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
REDIRECT_FD = re.compile(r"(?<![\w$])\d+(?=[<>])")  # the 2 of 2>&1 / 2> log
REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "&>", "&>>", ">|", "<&", "<>"}
PREFIXES = {"do", "then", "else", "time", "exec", "command", "!"}


def _tokens(text: str) -> list[str]:
    """Shell words and operators of one logical line; comments dropped. Raises ValueError on an
    unclosed quote."""
    lexer = shlex.shlex(REDIRECT_FD.sub("", text), posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    return list(lexer)


def _segments(tokens: list[str]) -> list[list[str]]:
    """Simple commands: split at ; && || | & ( ), redirections and their targets removed."""
    segments: list[list[str]] = [[]]
    it = iter(tokens)
    for tok in it:
        if tok in REDIRECTS:
            next(it, None)
        elif tok and set(tok) <= set(";&|()<>"):
            segments.append([])
        else:
            segments[-1].append(tok)
    return [s for s in segments if s]


def _strip_prefixes(words: list[str]) -> list[str]:
    """OMP_NUM_THREADS=2 nice -n 10 env A=1 time CMD -> CMD."""
    i = 0
    while i < len(words):
        w = words[i]
        if ASSIGNMENT.match(w) or w in PREFIXES or w == "env":
            i += 1
        elif w == "nice":
            i += 1
            if i < len(words) and words[i] == "-n":
                i += 2
            elif i < len(words) and re.fullmatch(r"-\d+", words[i]):
                i += 1
        else:
            break
    return words[i:]


def _program(words: list[str]) -> tuple[str, list[str]] | None:
    """(program key, its arguments) for a checked program, else None."""
    if not words:
        return None
    head, rest = words[0], words[1:]
    if re.fullmatch(r"((\S*/)?bin/)?edgecodec", head):  # not ~/.cache/edgecodec
        return "edgecodec", rest
    if re.fullmatch(r"(\S*/)?(python(3(\.\d+)?)?|torchrun)", head):
        for i, w in enumerate(rest):
            if w == "-c":
                return None
            if w == "-m" and i + 1 < len(rest):
                module = rest[i + 1]
                if module == "edgecodec" or module.startswith("edgecodec."):
                    return f"module:{module}", rest[i + 2:]
                return None
            if w.endswith(".py"):
                return _script(w, rest[i + 1:])
        return None
    if head.endswith(".py"):
        return _script(head, rest)
    return None


def _script(path: str, args: list[str]) -> tuple[str, list[str]] | None:
    match = re.search(r"(?:^|/)((?:benchmarks|scripts)/[\w/]+\.py)$", path)
    return (match.group(1), args) if match else None


def _commands_of(doc: str, line: int, text: str, inline: bool) -> list[Command]:
    tokens = _tokens(text)
    segments = [_strip_prefixes(s) for s in _segments(tokens)]
    if inline and (not segments or _program(segments[0]) is None):
        return []  # a span that does not start with a program: an option or a fragment
    out = []
    for words in segments:
        found = _program(words)
        if found:
            out.append(Command(doc, line, " ".join(words), found[0], tuple(found[1]), inline))
    return out


def extract(root: Path) -> tuple[list[Command], list[Unreadable]]:
    """Every checked command line of root/README.md and root/docs/*.md."""
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    commands: list[Command] = []
    unreadable: list[Unreadable] = []
    for path in docs:
        doc = path.relative_to(root).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        prose: list[tuple[int, str]] = []  # (line number, text) of the current paragraph

        def flush_prose() -> None:
            if not prose:
                return
            text = "\n".join(t for _, t in prose)
            starts = [0]
            for _, t in prose:
                starts.append(starts[-1] + len(t) + 1)
            for m in SPAN.finditer(text):
                body = m.group(2).replace("\n", " ")
                if body.startswith(" ") and body.endswith(" ") and body.strip():
                    body = body[1:-1]
                if prose[0][1].lstrip().startswith("|"):
                    body = body.replace(r"\|", "|")  # a table cell
                lineno = prose[sum(s <= m.start() for s in starts[1:])][0]
                try:
                    commands.extend(_commands_of(doc, lineno, body, inline=True))
                except ValueError as exc:
                    if MENTIONS_PROGRAM.search(body):
                        unreadable.append(Unreadable(doc, lineno, body, str(exc)))
            prose.clear()

        while i < len(lines):
            fence = FENCE.match(lines[i])
            if not fence:
                if lines[i].strip():
                    prose.append((i + 1, lines[i]))
                else:
                    flush_prose()
                i += 1
                continue
            flush_prose()
            marker, lang = fence.group(1), fence.group(2).lower()
            end = i + 1
            while end < len(lines) and not re.match(rf"^ {{0,3}}{marker[0]}{{{len(marker)},}}\s*$", lines[end]):
                end += 1
            body = lines[i + 1:end]
            j = 0
            while j < len(body) and lang not in NOT_SHELL:
                start, text = j, body[j]
                # backslash continuations, and lines joined while a quote is open
                while True:
                    while text.rstrip().endswith("\\") and j + 1 < len(body):
                        j += 1
                        text = text.rstrip()[:-1] + " " + body[j].strip()
                    try:
                        cmds = _commands_of(doc, i + 2 + start, re.sub(r"^\s*\$ ", "", text), inline=False)
                        break
                    except ValueError as exc:
                        if j + 1 < len(body):
                            j += 1
                            text += "\n" + body[j]
                            continue
                        cmds = []
                        if MENTIONS_PROGRAM.search(text):
                            unreadable.append(Unreadable(doc, i + 2 + start, text, str(exc)))
                        break
                commands.extend(cmds)
                j += 1
            i = end + 1
        flush_prose()
    return commands, unreadable


# --- parsers -------------------------------------------------------------------------------------
class _HandedOver(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def _main_parser(main: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``main`` builds, handed over at parse_args (so nothing runs); the trick of
    test_benchmarks.script_parser, for scripts/ and edgecodec modules."""
    def hand_over(self, *args, **kwargs):
        raise _HandedOver(self)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", hand_over)
        with pytest.raises(_HandedOver) as caught:
            main()
    return caught.value.parser


def _load_parser(program: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser | str | None:
    """The program's parser; None for a script without one; a string: why it cannot be run."""
    if program in ("edgecodec", "module:edgecodec", "module:edgecodec.cli"):
        from edgecodec.cli import build_parser
        return build_parser()
    if program.startswith("module:"):
        module = program.removeprefix("module:")
        if importlib.util.find_spec(module) is None or (
                module == "edgecodec" and importlib.util.find_spec("edgecodec.__main__") is None):
            return f"python -m {module}: no such runnable module"
        return _main_parser(importlib.import_module(module).main, monkeypatch)
    path = REPO / program
    if not path.is_file():
        return f"{program}: no such script"
    if "ArgumentParser(" not in path.read_text(encoding="utf-8"):
        return None
    if program.startswith("benchmarks/") and "/" not in program.removeprefix("benchmarks/"):
        return script_parser(path.stem, monkeypatch)
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"docs_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _main_parser(module.main, monkeypatch)


def _relaxed(parser: argparse.ArgumentParser, required: bool) -> argparse.ArgumentParser:
    """A copy that takes no abbreviated options, and (``required`` False) requires nothing."""
    parser = copy.deepcopy(parser)
    todo = [parser]
    while todo:
        p = todo.pop()
        p.allow_abbrev = False
        for action in p._actions:
            if not required:
                action.required = False
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
        if not required:
            for group in p._mutually_exclusive_groups:
                group.required = False
    return parser


def _value(word: str) -> str:
    if word.endswith("...") and word[:-3] in PLACEHOLDERS:
        word = word[:-3]
    return PLACEHOLDERS.get(word, word)


class Checker:
    """Parses commands with their programs' parsers (each built once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.monkeypatch = monkeypatch
        self.parsers: dict[tuple[str, bool], argparse.ArgumentParser | str | None] = {}

    def parser(self, program: str, inline: bool) -> argparse.ArgumentParser | str | None:
        key = (program, inline)
        if key not in self.parsers:
            base = self.parsers.get((program, not inline), ())
            if base == ():
                base = _load_parser(program, self.monkeypatch)
            if isinstance(base, argparse.ArgumentParser):
                base = _relaxed(base, required=not inline)
                if program.endswith(".py"):  # not the name of the process running the test
                    base.prog = f"python {program}"
            self.parsers[key] = base
        return self.parsers[key]

    def error(self, command: Command) -> str | None:
        """argparse's complaint about the command, or None if it parses (or has no parser)."""
        parser = self.parser(command.program, command.inline)
        if parser is None or isinstance(parser, str):
            return parser
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args([_value(a) for a in command.args])
        except SystemExit as exc:
            if exc.code not in (0, None):
                lines = err.getvalue().strip().splitlines()
                return lines[-1] if lines else f"exit {exc.code}"
        return None

    def failures(self, commands: list[Command], unreadable: list[Unreadable]) -> list[str]:
        out = [f"{u.doc}:{u.line}: {u.text!r}: cannot split it into arguments ({u.why})"
               for u in unreadable if (u.doc, u.text) not in SKIPPED]
        for c in commands:
            if (c.doc, c.text) in SKIPPED:
                continue
            why = self.error(c)
            if why:
                out.append(f"{c.doc}:{c.line}: {c.text}\n    -> {why}")
        return out


@pytest.fixture(scope="module")
def checker():
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield Checker(monkeypatch)


@pytest.fixture(scope="module")
def extracted():
    return extract(REPO)


# --- tests ---------------------------------------------------------------------------------------
def test_documented_commands_parse(checker, extracted):
    commands, unreadable = extracted
    failures = checker.failures(commands, unreadable)
    assert not failures, (f"{len(failures)} documented command line(s) the programs' parsers refuse (fix the doc, "
                          "or list the line in SKIPPED with a reason):\n" + "\n".join(failures))
    # the extraction still finds what it should: each kind of program, in README and docs/
    kinds = {c.program.split("/")[0].split(":")[0] for c in commands}
    assert {"edgecodec", "module", "benchmarks", "scripts"} <= kinds, kinds
    assert {c.doc for c in commands} >= {"README.md", "docs/edge.md", "docs/original.md", "docs/training.md"}
    assert sum(not c.inline for c in commands) >= 30


def test_skipped_lines_are_still_needed(checker, extracted):
    """An entry of SKIPPED whose line was fixed, removed or now parses goes too."""
    commands, unreadable = extracted
    present = {(c.doc, c.text) for c in commands} | {(u.doc, u.text) for u in unreadable}
    assert not set(SKIPPED) - present, f"SKIPPED lines no longer in the docs: {set(SKIPPED) - present}"
    parse = [(c.doc, c.text) for c in commands if (c.doc, c.text) in SKIPPED and not checker.error(c)]
    assert not parse, f"SKIPPED lines that parse now: {parse}"


def test_a_misspelt_option_is_reported(checker, tmp_path, monkeypatch):
    """The check can fail: a copy of the docs with one option misspelt in a fenced line, one in an
    inline span, a script option that does not exist and a value out of range, each reported at
    its line; a line listed in SKIPPED is not."""
    (tmp_path / "docs").mkdir()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count("--target-size 40KB") >= 1
    bad = readme.replace("--target-size 40KB", "--target-sise 40KB", 1)
    bad_line = bad[:bad.index("--target-sise")].count("\n") + 1
    bad += ("\nRun `edgecodec decompress x.edc --regoin 0,0,64,64` or\n"
            "`python benchmarks/edge.py --modles perceptual`.\n"
            "```bash\nOMP_NUM_THREADS=2 edgecodec compress a.png -o a.edc --quality 2 && \\\n"
            "  edgecodec info a.edc > info.txt 2>&1  # value out of range\n"
            "edgecodec compress a.png --qualty 0.5\n```\n")
    (tmp_path / "README.md").write_text(bad, encoding="utf-8")
    for doc in (REPO / "docs").glob("*.md"):
        (tmp_path / "docs" / doc.name).write_text(doc.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setitem(SKIPPED, ("README.md", "edgecodec compress a.png --qualty 0.5"), "the test's skipped line")
    failures = checker.failures(*extract(tmp_path))
    n = bad.count("\n") - 1
    assert len(failures) == 4, "\n".join(failures)
    assert failures[0].startswith(f"README.md:{bad_line}: edgecodec compress ") and "--target-sise" in failures[0]
    assert failures[1].startswith(f"README.md:{n - 5}: edgecodec decompress") and "--regoin" in failures[1]
    assert failures[2].startswith(f"README.md:{n - 4}: python benchmarks/edge.py") and "--modles" in failures[2]
    assert failures[3].startswith(f"README.md:{n - 2}: edgecodec compress a.png") and "--quality" in failures[3]
