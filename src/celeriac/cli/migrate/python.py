"""``celeriac migrate`` on Python files: the project model, rewriting imports, and the scan
for what differs."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from celeriac import _compat, config
from celeriac.cli.migrate.findings import (
    _CELERY_NEW_NAMES,
    _CONSTRUCTOR_ARGUMENTS,
    _SERIALIZER_SETTINGS,
    _TASK_DECORATOR_OPTIONS,
    APP_ATTRIBUTE_NOTES,
    CELERY_TASK_ATTRIBUTES,
    CONSTRUCTOR_NOTES,
    OLD_SETTING_NAME,
    PICKLE,
    RATE_LIMIT,
    RPC,
    TASK_ATTRIBUTE,
    TASK_OPTION,
    Change,
    Finding,
    Report,
    _app_attributes,
    _celery_spelling,
    _has,
    _missing_module,
    _missing_name,
    _module,
    _setting_finding,
    _top,
    _unsent,
)
from celeriac.task import Task

# -- Python: the project model (first pass) -----------------------------------------------------


@dataclass
class _PythonFile:
    path: Path
    display: str
    dotted: str
    is_package: bool
    source: str
    tree: ast.Module


@dataclass
class _Project:
    """What one file's checks need to know about the others."""

    #: module → names bound at module level to ``Celery(...)``
    apps: dict[str, set[str]] = field(default_factory=dict)
    #: module read by ``config_from_object('module')`` → its namespace (None: no namespace)
    config_modules: dict[str, str | None] = field(default_factory=dict)
    #: (module, class name) read by ``config_from_object(Class)`` → namespace
    config_classes: dict[tuple[str, str], str | None] = field(default_factory=dict)
    #: namespace of ``config_from_object('django.conf:settings', namespace=...)``, if any
    django_namespace: str | None = None
    #: the module DJANGO_SETTINGS_MODULE names, if the code sets it
    django_settings: str | None = None


def _is_app_call(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name in ("Celery", "Celeriac")


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _learn(project: _Project, module: _PythonFile) -> None:
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and _is_app_call(node.value):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            project.apps.setdefault(module.dotted, set()).update(names)
    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "config_from_object" and node.args:
            _learn_config_source(project, module, node)
        elif node.func.attr == "setdefault" and _string(node.args[0] if node.args else None) == (
            "DJANGO_SETTINGS_MODULE"
        ):
            project.django_settings = _string(node.args[1]) if len(node.args) > 1 else None


def _learn_config_source(project: _Project, module: _PythonFile, call: ast.Call) -> None:
    source, namespace = call.args[0], _string(_keyword(call, "namespace"))
    target = _string(source)
    if target == "django.conf:settings":
        project.django_namespace = namespace or ""
    elif target is not None and ":" in target:  # 'proj.config:Settings', a class
        name, _, attr = target.partition(":")
        project.config_classes[(name, attr)] = namespace
    elif target is not None:
        project.config_modules[target] = namespace
    elif isinstance(source, ast.Name):
        project.config_classes[(module.dotted, source.id)] = namespace


def _config_namespace(project: _Project, module: _PythonFile) -> tuple[bool, str | None]:
    """Whether ``module`` is read as settings, and with which namespace."""
    if module.dotted in project.config_modules:
        return True, project.config_modules[module.dotted]
    if module.path.name == "celeryconfig.py":
        return True, None
    if project.django_namespace is None:
        return False, None
    namespace = project.django_namespace or None
    named = project.django_settings
    if named is not None:  # that module, or its siblings in a settings package (base.py, ...)
        package = named.rpartition(".")[0]
        sibling = module.path.parent.name == "settings" and module.dotted.rpartition(".")[0] == package
        return module.dotted == named or module.dotted.startswith(named + ".") or sibling, namespace
    in_settings = module.path.name == "settings.py" or module.path.parent.name == "settings"
    return in_settings, namespace


# -- Python: rewriting imports ------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


class _Offsets:
    """(line, UTF-8 column) as ast reports them → offsets into the text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", source)]

    def __call__(self, line: int, col: int) -> int:
        start = self.starts[line - 1]
        text = self.source[start : start + col]  # col counts bytes: at least that many characters
        return start + len(text.encode("utf-8")[:col].decode("utf-8", "ignore"))

    def span(self, node: ast.stmt) -> tuple[int, int]:
        assert node.end_lineno is not None and node.end_col_offset is not None
        return self(node.lineno, node.col_offset), self(node.end_lineno, node.end_col_offset)


class _Imports:
    """Rewrites one file's Celery and kombu imports and reports those it cannot rewrite."""

    def __init__(self, file: _PythonFile, offsets: _Offsets, findings: set[Finding]) -> None:
        self.file = file
        self.offsets = offsets
        self.findings = findings
        self.edits: list[_Edit] = []

    def report(self, line: int, feature: str, message: str, advice: str = "") -> None:
        self.findings.add(Finding(self.file.display, line, feature, message, advice))

    def plan(self) -> list[_Edit]:
        for node in ast.walk(self.file.tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                if _top(node.module) == "kombu":
                    self._kombu(node)
                elif _top(node.module) in ("celery", "celeriac"):
                    self._from(node)
            elif isinstance(node, ast.Import):
                self._import(node)
        return self.edits

    def _from(self, node: ast.ImportFrom) -> None:
        assert node.module is not None
        celery_module = _celery_spelling(node.module)
        target = _compat.CELERY_MODULES.get(celery_module)
        if target is None or _module(target) is None:
            self.report(
                node.lineno,
                "import",
                f"{celery_module} has no celeriac counterpart",
                _missing_module(celery_module),
            )
            return
        missing = [a.name for a in node.names if a.name != "*" and not _has(target, a.name)]
        for name in missing:
            self.report(node.lineno, *_missing_name(target, name))
        for alias in node.names:
            if (unsent := _unsent(target, alias.name)) is not None:
                self.report(node.lineno, *unsent)
        if not missing and node.module != target:
            self._replace_module(node, target)

    def _replace_module(self, node: ast.ImportFrom, target: str) -> None:
        assert node.module is not None
        start, end = self.offsets.span(node)
        text = self.file.source[start:end]
        match = re.match(r"from\s+" + re.escape(node.module) + r"(?=\s)", text)
        if match is not None:
            self.edits.append(_Edit(start, start + match.end(), f"from {target}"))
        else:  # unusual spacing inside the dotted name: write the statement anew
            new = ast.ImportFrom(module=target, names=node.names, level=0)
            self.edits.append(_Edit(start, end, ast.unparse(new)))

    def _kombu(self, node: ast.ImportFrom) -> None:
        if node.module == "kombu.common" and any(a.name == "Broadcast" for a in node.names):
            self.report(
                node.lineno,
                "queues",
                "kombu.common.Broadcast",
                "broadcast queues are not implemented in celeriac: send one task to each worker's own queue",
            )
        if node.module != "kombu":
            return
        ours = [a for a in node.names if a.name in _compat.KOMBU_NAMES]
        theirs = [a for a in node.names if a.name not in _compat.KOMBU_NAMES]
        if not ours:
            return
        if not theirs:
            self._replace_module(node, "celeriac")
            return
        start, end = self.offsets.span(node)
        line_start = self.offsets(node.lineno, 0)
        indent = self.file.source[line_start:start]
        joint = "\n" + indent if not indent.strip() else "; "
        new = [ast.ImportFrom("celeriac", ours, 0), ast.ImportFrom("kombu", theirs, 0)]
        self.edits.append(_Edit(start, end, joint.join(ast.unparse(n) for n in new)))

    def _import(self, node: ast.Import) -> None:
        if not any(_top(a.name) == "celery" for a in node.names):
            return
        names: list[ast.alias] = []
        for alias in node.names:
            if _top(alias.name) != "celery":
                names.append(alias)
                continue
            target = _compat.CELERY_MODULES.get(alias.name)
            if target is None or _module(target) is None:
                self.report(
                    node.lineno,
                    "import",
                    f"{alias.name} has no celeriac counterpart",
                    _missing_module(alias.name),
                )
                return
            # `import celery.result` binds `celery`: keep that name bound, to celeriac
            names.append(ast.alias(target, alias.asname or ("celery" if target == "celeriac" else None)))
        unbound = any(a.asname is None and _top(a.name) == "celeriac" for a in names)
        if unbound and not any(a.asname == "celery" for a in names):
            names.append(ast.alias("celeriac", "celery"))
        start, end = self.offsets.span(node)
        self.edits.append(_Edit(start, end, ast.unparse(ast.Import(names))))


def _apply(source: str, edits: Iterable[_Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        source = source[: edit.start] + edit.text + source[edit.end :]
    return source


# -- Python: scanning for differences -----------------------------------------------------------


def _names_bound_by_imports(tree: ast.Module) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Local names bound to celeriac modules, and to names imported from them."""
    modules: dict[str, str] = {}
    names: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _compat.CELERY_MODULES.get(_celery_spelling(alias.name))
                if target is not None and _top(alias.name) in ("celery", "celeriac"):
                    modules[alias.asname or _top(alias.name)] = target if alias.asname else "celeriac"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            target = _compat.CELERY_MODULES.get(_celery_spelling(node.module))
            if target is None or _top(node.module) not in ("celery", "celeriac"):
                continue
            for alias in node.names:
                submodule = _compat.CELERY_MODULES.get(f"{_celery_spelling(node.module)}.{alias.name}")
                if submodule is not None:
                    modules[alias.asname or alias.name] = submodule
                else:
                    names[alias.asname or alias.name] = (target, alias.name)
    return modules, names


def _resolve_relative(file: _PythonFile, node: ast.ImportFrom) -> str:
    package = file.dotted if file.is_package else file.dotted.rpartition(".")[0]
    parts = package.split(".") if package else []
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _app_names(file: _PythonFile, project: _Project) -> set[str]:
    names = set(project.apps.get(file.dotted, ()))
    for node in ast.walk(file.tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve_relative(file, node) if node.level else node.module or ""
            apps = project.apps.get(source, set())
            names.update(alias.asname or alias.name for alias in node.names if alias.name in apps)
    return names


def _is_task_class(node: ast.ClassDef) -> bool:
    for base in node.bases:
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        if name.endswith("Task"):
            return True
    return False


def _is_task_decorator(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "task") or (
        isinstance(func, ast.Name) and func.id in ("shared_task", "task")
    )


def _mentions(node: ast.AST, text: str) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == text for n in ast.walk(node))


class _Scanner(ast.NodeVisitor):
    """Reports, in one Python file, each use of what celeriac lacks or does differently."""

    def __init__(self, file: _PythonFile, project: _Project, findings: set[Finding]) -> None:
        self.file = file
        self.project = project
        self.findings = findings
        self.modules, self.imported = _names_bound_by_imports(file.tree)
        self.apps = _app_names(file, project)
        self.config_classes = {
            name: namespace
            for (module, name), namespace in project.config_classes.items()
            if module == file.dotted
        }

    def report(
        self, node: ast.AST, feature: str, message: str, advice: str = "", blocks: bool = True
    ) -> None:
        line = getattr(node, "lineno", 1)
        self.findings.add(Finding(self.file.display, line, feature, message, advice, blocks))

    def scan(self) -> None:
        is_config, namespace = _config_namespace(self.project, self.file)
        if is_config:
            self._settings_body(self.file.tree.body, namespace)
        self.visit(self.file.tree)

    # -- settings

    def setting(self, node: ast.AST, name: str, value: ast.AST | None, shown: str | None = None) -> None:
        shown = shown or name
        new = config.CELERY_OLD_NAMES.get(name)
        if new is not None:  # read as the new name, with a warning
            self.report(node, "setting", f"old setting name {shown}, read as {new}", OLD_SETTING_NAME, False)
            name = new
        finding = _setting_finding(name, shown)
        if finding is not None:
            feature, message, advice, blocks = finding
            self.report(node, feature, message, advice, blocks)
        if value is None:
            return
        if name in _SERIALIZER_SETTINGS and _mentions(value, "pickle"):
            self.report(node, "pickle", f"setting {shown} names pickle", PICKLE, blocks=False)
        if name == "task_annotations" and _mentions(value, "rate_limit"):
            self.report(node, "rate limit", f"setting {shown} sets rate_limit", RATE_LIMIT)

    def _settings_body(self, body: list[ast.stmt], namespace: str | None) -> None:
        """Module- or class-level assignments read as settings (config_from_object)."""
        for node in body:
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and not target.id.startswith("_"):
                    self._settings_name(node, target.id, node.value, namespace)

    def _settings_name(self, node: ast.AST, name: str, value: ast.AST | None, namespace: str | None) -> None:
        """A name read as ``config_from_object`` reads it: lower-case names and Celery's old
        names; with a namespace, ``<NAMESPACE>_<NEW NAME>`` and the old names Celery reads there."""
        old = name in config.CELERY_OLD_NAMES
        if not namespace:
            if name.islower() or old:
                self.setting(node, name, value)
            return
        prefix = f"{namespace}_"
        stripped = name[len(prefix) :].lower() if name.startswith(prefix) else None
        if stripped is not None and (stripped in _CELERY_NEW_NAMES or not old):
            self.setting(node, stripped, value, shown=name)
        elif old and (stripped is not None or config.CELERY_OLD_NAMES[name] in _CELERY_NEW_NAMES):
            self.setting(node, name, value)

    def _settings_call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is not None:
                self.setting(keyword, keyword.arg, keyword.value)
        for arg in node.args:
            if isinstance(arg, ast.Dict):
                for key, value in zip(arg.keys, arg.values, strict=True):
                    name = _string(key)
                    if key is not None and name is not None:
                        self.setting(key, name, value)

    # -- visitors

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            self._method_call(node, func)
        if _is_app_call(node):
            self._app_call(node)
        for keyword in node.keywords:
            if keyword.arg == "serializer" and _string(keyword.value) == "pickle":
                self.report(keyword, "pickle", "serializer='pickle'", PICKLE, blocks=False)
        self.generic_visit(node)

    def _method_call(self, node: ast.Call, func: ast.Attribute) -> None:
        attr = func.attr
        if attr == "revoke":
            self.report(node, "remote control", ".revoke()", _compat.REMOTE_CONTROL_MISSING)
        elif attr == "add_periodic_task":
            self.report(node, "beat", "add_periodic_task()", _compat.BEAT_MISSING)
        elif attr == "update" and isinstance(func.value, ast.Attribute) and func.value.attr == "conf":
            self._settings_call(node)
        elif attr == "config_from_object" and node.args and isinstance(node.args[0], ast.Dict):
            self._settings_call(ast.Call(func, [node.args[0]], []))

    def _app_call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg in _CONSTRUCTOR_ARGUMENTS:
                continue
            if keyword.arg in CONSTRUCTOR_NOTES:
                self.report(keyword, "app", f"Celery({keyword.arg}=...)", CONSTRUCTOR_NOTES[keyword.arg])
            else:
                self.setting(keyword, keyword.arg, keyword.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        if isinstance(value, ast.Name) and value.id in self.modules:
            module = self.modules[value.id]
            if _module(module) is not None and not _has(module, node.attr):
                self.report(node, *_missing_name(module, node.attr))
            elif (unsent := _unsent(module, node.attr)) is not None:
                self.report(node, *unsent)
        if isinstance(value, ast.Name) and value.id in self.apps:
            self._app_attribute(node)
        elif node.attr == "control" and (
            (isinstance(value, ast.Name) and value.id == "current_app")
            or (isinstance(value, ast.Attribute) and value.attr in ("app", "current_app"))
        ):
            self.report(node, "remote control", "app.control", _compat.REMOTE_CONTROL_MISSING)
        self.generic_visit(node)

    def _app_attribute(self, node: ast.Attribute) -> None:
        if node.attr in _app_attributes():
            return
        feature, advice = APP_ATTRIBUTE_NOTES.get(
            node.attr, ("app", "celeriac's app has no such attribute: see docs/celery.md")
        )
        self.report(node, feature, f"app.{node.attr}", advice)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and node.id in self.imported:
            module, name = self.imported[node.id]
            if _module(module) is not None and not _has(module, name):
                self.report(node, *_missing_name(module, name))
            elif (unsent := _unsent(module, name)) is not None:
                self.report(node, *unsent)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assigned(node, target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assigned(node, node.target)
        self.generic_visit(node)

    def _assigned(self, node: ast.Assign | ast.AnnAssign, target: ast.expr) -> None:
        """``app.conf.name = ...`` and ``app.conf['name'] = ...``."""
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
            if target.value.attr == "conf":
                self.setting(node, target.attr, node.value)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute):
            name = _string(target.slice)
            if target.value.attr == "conf" and name is not None:
                self.setting(node, name, node.value)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value.startswith("rpc://"):
            self.report(node, "rpc://", "the rpc:// result backend", RPC)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if node.name in self.config_classes:
            self._settings_body(node.body, self.config_classes[node.name])
        if _is_task_class(node):
            self._task_class_body(node)
        self._decorators(node.decorator_list)
        self.generic_visit(node)

    def _task_class_body(self, node: ast.ClassDef) -> None:
        for statement in node.body:
            if not isinstance(statement, ast.Assign):
                continue
            for target in statement.targets:
                name = target.id if isinstance(target, ast.Name) else ""
                if name == "rate_limit":
                    self.report(statement, "rate limit", f"{node.name}.rate_limit", RATE_LIMIT)
                elif name in CELERY_TASK_ATTRIBUTES and not hasattr(Task, name):
                    self.report(statement, "task", f"{node.name}.{name}", TASK_ATTRIBUTE, blocks=False)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._decorators(node.decorator_list)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def _decorators(self, decorators: list[ast.expr]) -> None:
        for decorator in decorators:
            if not _is_task_decorator(decorator):
                continue
            assert isinstance(decorator, ast.Call)
            for keyword in decorator.keywords:
                if keyword.arg == "rate_limit":
                    self.report(keyword, "rate limit", "@task(rate_limit=...)", RATE_LIMIT)
                elif keyword.arg is not None and keyword.arg not in _TASK_DECORATOR_OPTIONS:
                    hint = config.did_you_mean(keyword.arg, _TASK_DECORATOR_OPTIONS)
                    self.report(keyword, "task", f"@task option {keyword.arg!r}{hint}", TASK_OPTION)


def _python(file: _PythonFile, project: _Project, report: Report) -> None:
    imports = _Imports(file, _Offsets(file.source), report.findings)
    new = _apply(file.source, imports.plan())
    _Scanner(file, project, report.findings).scan()
    if new != file.source:
        report.changes.append(Change(file.path, file.display, file.source, new))
