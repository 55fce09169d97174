"""Reading Kconfig files (.config, fragments): one parser for every user."""
from __future__ import annotations


def parse_line(line: str) -> tuple[str, str] | None:
    """``CONFIG_X=y`` or ``# CONFIG_X is not set`` -> (symbol, the line); else None."""
    line = line.strip()
    if line.startswith("CONFIG_") and "=" in line:
        return line.split("=", 1)[0], line
    if line.startswith("# CONFIG_") and line.endswith(" is not set"):
        return line[2:].split()[0], line
    return None


def symbols(text: str) -> dict[str, str]:
    """symbol -> its line, for every setting in ``text`` (later lines win)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parsed = parse_line(line)
        if parsed is not None:
            out[parsed[0]] = parsed[1]
    return out


def symbols_with_lines(text: str) -> dict[str, tuple[str, int]]:
    """symbol -> (its line, 1-based line number), later lines win."""
    out: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parsed = parse_line(line)
        if parsed is not None:
            out[parsed[0]] = (parsed[1], number)
    return out
