"""What Python runs inside the server: the end-to-end proof of the PL/Python path."""
import platform
import sys


def python_info() -> dict:
    """Version and implementation of the server's embedded Python."""
    return {
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable_prefix": sys.prefix,
    }


def describe(capabilities: dict) -> str:
    """One line per optional feature and the path it took, for `reelscore status`."""
    lines = []
    for feature, path in sorted((capabilities.get("paths") or {}).items()):
        lines.append(f"{feature}: {path}")
    return "\n".join(lines)
