#!/usr/bin/env python3
"""Function lengths in C++ sources, by a brace-depth scan.

A function is a top-level brace block (outside namespace/class/struct/enum/extern blocks, which
are entered, not counted) whose header ends in ')' plus qualifiers (const, override, noexcept,
-> T, an initialiser list). Its length is the number of lines from the line of the opening brace
to the line of the closing brace, inclusive. Strings, character literals and comments are
ignored. Lambdas and local classes count toward the function that holds them.

usage: function_lengths.py [--max N] [--top K] DIR_OR_FILE...
Prints the K longest functions; with --max, exits 1 if any function is longer than N lines.
"""
import argparse
import os
import re
import sys

CONTAINER = re.compile(r'\b(namespace|class|struct|union|enum)\b[^;{}()]*$|extern\s+"C"\s*$')


def strip(text):
    """Blanks out comments, strings and char literals, keeping newlines."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(''.join('\n' if ch == '\n' else ' ' for ch in text[i:j])); i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            if not m:
                out.append(c); i += 1; continue
            end = text.find(')' + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(''.join('\n' if ch == '\n' else ' ' for ch in text[i:j])); i = j
        elif c in '"\'':
            if c == "'" and i > 0 and (text[i - 1].isalnum()):  # digit separator 1'000
                out.append(' '); i += 1; continue
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + ' ' * (min(j, n) - i - 1) + (c if j < n else '')); i = j + 1
        else:
            out.append(c); i += 1
    return ''.join(out)


def functions(path):
    text = strip(open(path, encoding='utf-8', errors='replace').read())
    text = re.sub(r'^\s*#.*$', '', text, flags=re.M)  # preprocessor lines
    stack = []  # entries: ('container'|'func'|'other', start_line, name)
    header_start = 0
    line = 1
    found = []
    for i, c in enumerate(text):
        if c == '\n':
            line += 1
        elif c == '{':
            header = text[header_start:i]
            in_func = any(k == 'func' for k, _, _ in stack)
            h = ' '.join(header.split())
            if in_func:
                stack.append(('other', line, ''))
            elif CONTAINER.search(h):
                stack.append(('container', line, h))
            elif re.search(r'\)\s*(const|override|final|noexcept|mutable|&|&&|\s)*(->\s*[\w:<>,\s*&]+)?$', h) or \
                    re.search(r'\)\s*(const\s*)?(noexcept\s*)?:\s*[\w:]+\s*[({]', h) or re.search(r'\)\s*:.*[)}]$', h):
                m = re.search(r'([~\w:]+(?:operator\S*)?)\s*\(', h)
                stack.append(('func', line, m.group(1) if m else h[:40]))
            else:
                stack.append(('other', line, ''))
            header_start = i + 1
        elif c == '}':
            if stack:
                kind, start, name = stack.pop()
                if kind == 'func':
                    found.append((line - start + 1, path, start, name))
            header_start = i + 1
        elif c == ';':
            if not any(k == 'func' for k, _, _ in stack):
                header_start = i + 1
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('paths', nargs='+')
    ap.add_argument('--max', type=int, default=0)
    ap.add_argument('--top', type=int, default=10)
    a = ap.parse_args()
    files = []
    for p in a.paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, x) for x in names if x.endswith(('.cc', '.h'))]
        else:
            files.append(p)
    found = sorted((f for path in sorted(files) for f in functions(path)), reverse=True)
    for n, path, start, name in found[:a.top]:
        print(f'{n:5d}  {path}:{start}  {name}')
    print(f'{len(found)} functions in {len(files)} files; longest {found[0][0] if found else 0} lines')
    if a.max and found and found[0][0] > a.max:
        over = [f for f in found if f[0] > a.max]
        print(f'function_lengths: {len(over)} function(s) over {a.max} lines', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
