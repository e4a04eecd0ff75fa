#!/usr/bin/env python3
"""Style checks for Relay's C sources (run by scripts/check.sh, make check).

usage: scripts/check.py [DIR ...]      (default: src tools)

Fails, naming file:line, on:
  - banned functions: strcpy strcat sprintf vsprintf gets atoi atol strtok
    (comments and string literals are ignored);
  - C files (.c, .h) over 1000 lines;
  - functions over 80 lines, counted from the line that starts the
    definition (an identifier at column 0 followed by '(') to its closing
    '}' at column 0. A rough counter: it relies on the project's style of
    function braces at column 0.
Then prints a short complexity report: the 10 longest functions with their
branch count (if/for/while/case/&&/||/?).
"""
import os
import re
import sys

BANNED = ("strcpy", "strcat", "sprintf", "vsprintf", "gets", "atoi", "atol", "strtok")
BANNED_RE = re.compile(r"\b(" + "|".join(BANNED) + r")\s*\(")
MAX_FILE_LINES = 1000
MAX_FUNC_LINES = 80
DEF_RE = re.compile(r"^(?!(?:if|for|while|switch|return|else|do|case|typedef)\b)(?:[A-Za-z_][\w \t\*,]*?[\s\*])?([A-Za-z_]\w*)\s*\(")
BRANCH_RE = re.compile(r"\b(if|for|while|case)\b|&&|\|\||\?")


def strip_code(text):
    """Blank out comments and string/char literals, keeping newlines."""
    out = []
    i, n = 0, len(text)
    state = None
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if state is None:
            if c == "/" and nxt == "*":
                state = "block"
                out.append("  ")
                i += 2
                continue
            if c == "/" and nxt == "/":
                state = "line"
                out.append("  ")
                i += 2
                continue
            if c in "\"'":
                state = c
                out.append(c)
                i += 1
                continue
            out.append(c)
        elif state == "block":
            if c == "*" and nxt == "/":
                state = None
                out.append("  ")
                i += 2
                continue
            out.append("\n" if c == "\n" else " ")
        elif state == "line":
            if c == "\n":
                state = None
                out.append("\n")
            else:
                out.append(" ")
        else:  # inside a string or char literal
            if c == "\\" and nxt:
                out.append("  " if nxt != "\n" else " \n")
                i += 2
                continue
            if c == state:
                state = None
                out.append(c)
            elif c == "\n":
                state = None  # unterminated: stop at the line end
                out.append("\n")
            else:
                out.append(" ")
        i += 1
    return "".join(out)


def functions(lines):
    """Yield (name, first line index, last line index) of each definition."""
    i, n = 0, len(lines)
    while i < n:
        m = DEF_RE.match(lines[i])
        if not m or lines[i].rstrip().endswith(";"):
            i += 1
            continue
        # The body's '{' must come before any ';' (else it is a prototype).
        j = i
        brace = None
        while j < n and j < i + 15:
            s = lines[j].rstrip()
            if j > i and s.endswith(";") and not s.startswith("{"):
                break
            if s == "{" or (s.endswith("{") and ")" in s):
                brace = j
                break
            if s.endswith(";"):
                break
            j += 1
        if brace is None:
            i += 1
            continue
        k = brace + 1
        while k < n and not lines[k].startswith("}"):
            k += 1
        yield m.group(1), i, min(k, n - 1)
        i = k + 1


def main(argv):
    if any(a in ("-h", "--help") for a in argv[1:]):
        print(__doc__.strip())
        return 0
    roots = argv[1:] or ["src", "tools"]
    problems = []
    funcs = []
    nfiles = 0
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                if not fn.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, fn)
                nfiles += 1
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                raw_lines = text.split("\n")
                if text.endswith("\n"):
                    raw_lines.pop()
                if len(raw_lines) > MAX_FILE_LINES:
                    problems.append(f"{path}:1: {len(raw_lines)} lines (max {MAX_FILE_LINES}): split the file")
                code = strip_code(text).split("\n")
                for no, line in enumerate(code, 1):
                    for m in BANNED_RE.finditer(line):
                        problems.append(f"{path}:{no}: banned function {m.group(1)}()")
                if not fn.endswith(".c"):
                    continue
                for name, a, b in functions(code):
                    length = b - a + 1
                    branches = sum(len(BRANCH_RE.findall(code[x])) for x in range(a, b + 1))
                    funcs.append((length, branches, path, a + 1, name))
                    if length > MAX_FUNC_LINES:
                        problems.append(f"{path}:{a + 1}: function {name}() is {length} lines (max {MAX_FUNC_LINES}): split it")
    print(f"checked {nfiles} C files, {len(funcs)} functions in {' '.join(roots)}")
    if funcs:
        print("longest functions (lines, branches):")
        for length, branches, path, line, name in sorted(funcs, key=lambda f: (-f[0], f[2], f[3]))[:10]:
            print(f"  {length:4d} {branches:4d}  {path}:{line} {name}()")
    for p in problems:
        print(p)
    if problems:
        print(f"check: {len(problems)} problem(s)")
        return 1
    print("check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
