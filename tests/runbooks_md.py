"""The commands a runbook (docs/runbooks/*.md) gives: the lines of its `sh`
blocks, split into the programs they run, and the `understudy ...` code
spans of its prose."""
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = sorted((REPO / "docs" / "runbooks").glob("*.md"))
SHELL_FENCES = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class ShellLine:
    path: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    def segments(self) -> list[list[str]]:
        """argv of each command in the line (pipes, && and ; split it; redirections dropped)."""
        lexer = shlex.shlex(self.text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segments, current, tokens = [], [], list(lexer)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token in ("|", "&&", "||", ";"):
                segments.append(current)
                current = []
            elif token in (">", ">>", "<", "2>"):
                i += 1  # and its target
            else:
                current.append(token)
            i += 1
        segments.append(current)
        return [_unwrap(s) for s in segments if s]


def _unwrap(argv: list[str]) -> list[str]:
    """Drops environment assignments and a leading sudo."""
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
        argv = argv[1:]
    if argv and argv[0] == "sudo":
        argv = argv[1:]
    return argv


def shell_lines(path: Path) -> list[ShellLine]:
    found, fence, pending, start = [], None, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            continue
        if fence not in SHELL_FENCES:
            continue
        if stripped.startswith("$ "):
            stripped = stripped[2:]
        if not pending:
            start = number
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending and not pending.startswith("#"):
            found.append(ShellLine(path, start, pending))
        pending = ""
    return found


def inline_commands(path: Path) -> list[tuple[int, str]]:
    """`understudy ...` (or `sudo understudy ...`) in the prose's code spans."""
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        for match in re.finditer(r"`(?:sudo )?(understudy [^`]+)`", raw):
            found.append((number, match.group(1)))
    return found
