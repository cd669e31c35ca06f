"""The ``exitgate`` command's entry point. ``exitgate apply -f FILE...`` with a control plane
running is answered from here, having imported only the standard library and the hand-off
(``handoff``): at 10,000 services the command's imports were half of its time. Everything else,
and an apply with any other option, or none running, goes to the whole command (``main``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The options of `apply` taken here (every other argument leaves it to the whole command).
_FILES = ("-f", "--filename")
_NAMESPACE = ("-n", "--namespace")
_STATE_DIR = ("--state-dir",)


def main() -> None:
    code = apply_handed_off(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from exitgate.cli.main import main as whole

    whole()


def _parse(argv: list[str]) -> tuple[list[str], str, str | None] | None:
    """``apply``'s files, namespace and state directory, if ``argv`` is an apply this entry
    takes as the whole command would."""
    if argv[:1] != ["apply"]:
        return None
    files: list[str] = []
    namespace, state_dir = "default", None
    i = 1
    while i < len(argv):
        name, eq, value = argv[i].partition("=") if argv[i].startswith("--") else (argv[i], "", "")
        if name not in (*_FILES, *_NAMESPACE, *_STATE_DIR):
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            i += 1
            value = argv[i]
        if name in _FILES:
            files.append(value)
        elif name in _NAMESPACE:
            namespace = value
        else:
            state_dir = value
        i += 1
    return files, namespace, state_dir


def apply_handed_off(argv: list[str]) -> int | None:
    """The exit status of ``argv`` answered by a running control plane; None to leave it to the
    whole command: not such an apply, ``-f -`` or a pipe (read once, there), a file that cannot
    be read (the whole command says so), no state directory, none running, more text than the
    control plane takes."""
    parsed = _parse(argv)
    if parsed is None or not parsed[0]:
        return None
    files, namespace, state_dir = parsed
    if not all(os.path.isfile(f) or os.path.isdir(f) for f in files):
        # A pipe (`-f <(...)`, `-f -`) is read once, by the command that applies it.
        return None
    from exitgate import handoff
    from exitgate.api import sources
    from exitgate.runtime import NoStateDir, resolve_state_dir

    try:
        root = resolve_state_dir(Path(state_dir) if state_dir is not None else None)
    except NoStateDir:
        return None
    if not (root / handoff.SOCKET_FILE).exists():
        return None  # nothing to hand it to: the files are read once, by the command
    texts, problems = sources.read(files)
    if problems:
        return None
    try:
        answer = handoff.apply(root, texts, namespace)
    except handoff.HandoffError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    return None if answer is None else handoff.print_answer(answer)


if __name__ == "__main__":
    main()
