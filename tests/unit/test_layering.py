"""Dependency direction (STYLE.md): parsed from the imports, so a wrong arrow fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLASK_FREE = ("portal/services", "portal/security", "portal/providers", "portal/oauth.py", "portal/sandbox")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def test_services_security_providers_and_oauth_never_import_flask():
    for prefix in FLASK_FREE:
        target = ROOT / prefix
        files = [target] if target.is_file() else list(target.rglob("*.py"))
        for path in files:
            bad = {name for name in _imports(path) if name == "flask" or name.startswith("flask")}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_nothing_outside_imports_views_admin_or_workers():
    for path in _python_files("portal", "agency_admin", "workers"):
        rel = path.relative_to(ROOT).as_posix()
        for name in _imports(path):
            if name.startswith("portal.views") and not (rel.startswith("portal/views") or rel == "portal/app.py"):
                raise AssertionError(f"{rel} imports {name}")
            if name.startswith("agency_admin") and not (rel.startswith("agency_admin") or rel == "portal/app.py"):
                raise AssertionError(f"{rel} imports {name}")
            if name.startswith("workers") and not rel.startswith("workers"):
                raise AssertionError(f"{rel} imports {name}")


def test_services_never_import_the_queue_or_the_web_layer():
    for path in _python_files("portal/services"):
        for name in _imports(path):
            assert name not in ("portal.queue", "portal.web", "portal.app"), f"{path.name} imports {name}"
