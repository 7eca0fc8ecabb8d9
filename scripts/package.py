#!/usr/bin/env python3
"""Builds dist/app.zip, the package `func azure functionapp publish` uploads for this app.

It takes every file of the project folder that `.funcignore` does not exclude (gitignore-style
patterns, the subset this project uses: names, globs, `dir/` and `/rooted` patterns), keeps the
handler's executable bit, and refuses to build a package without an executable `handler`.
Standard library only, so it runs before any virtualenv exists.

    python3 scripts/package.py [OUT]                   ./handler, into OUT (dist/app.zip)
    python3 scripts/package.py --handler PATH [OUT]    PATH as the package's `handler` (the test
                                                       command's quick static build, never
                                                       ./handler, so no publish picks it up)
"""
from __future__ import annotations

import fnmatch
import os
import stat
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "dist" / "app.zip"
# Never in a package, whatever .funcignore says: VCS data and the ignore file itself.
ALWAYS_IGNORED = [".git", ".funcignore"]


def read_patterns(root: Path) -> list[str]:
    path = root / ".funcignore"
    lines = path.read_text().splitlines() if path.exists() else []
    patterns = [line.strip() for line in lines]
    return [p for p in patterns if p and not p.startswith("#")] + ALWAYS_IGNORED


def ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore semantics for the subset used here; the last matching pattern wins."""
    verdict = False
    parts = rel.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if pattern.startswith("/") or "/" in pattern:
            hit = fnmatch.fnmatchcase(rel, pattern.lstrip("/"))
        else:
            hit = fnmatch.fnmatchcase(parts[-1], pattern)
        if hit:
            verdict = not negate
    return verdict


def collect(root: Path) -> list[Path]:
    patterns = read_patterns(root)
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not ignored(prefix + d, True, patterns))
        for name in sorted(filenames):
            if not ignored(prefix + name, False, patterns):
                files.append(base / name)
    return files


def build(root: Path, out: Path, handler: Path | None = None) -> list[str]:
    handler = handler or root / "handler"
    if not handler.is_file() or not os.access(handler, os.X_OK):
        raise SystemExit(f"package: no executable {handler}; run `bash scripts/build-static.sh` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The package's `handler` comes from `handler`, whatever lies at ./handler.
    files = [(p, p.relative_to(root).as_posix()) for p in collect(root)]
    files = [(p, rel) for p, rel in files if rel != "handler"] + [(handler, "handler")]
    names = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path, rel in files:
            if path.resolve() == out.resolve():
                continue
            info = zipfile.ZipInfo.from_file(path, rel)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Unix permissions in the upper 16 bits, so the handler stays executable.
            info.external_attr = (stat.S_IFREG | (path.stat().st_mode & 0o777)) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
            names.append(rel)
    return names


def main() -> None:
    args = sys.argv[1:]
    handler = None
    if args[:1] == ["--handler"] and len(args) >= 2:
        handler, args = Path(args[1]).resolve(), args[2:]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        raise SystemExit("usage: package.py [--handler PATH] [OUT]")
    out = Path(args[0]).resolve() if args else DEFAULT_OUT
    names = build(ROOT, out, handler)
    for name in names:
        print(f"  {name}")
    print(f"package: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: "
          f"{len(names)} files, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
