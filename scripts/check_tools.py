"""Finds every external command that the scripts and tests under scripts/, e2e/ and tests/ call
and says where each one comes from: a Debian package of scripts/apt-packages (looked up in a
fresh bookworm root with those packages installed), the machine image, or the project's own
build (both declared in scripts/other-tools). Exits non-zero naming each command that comes from
nowhere, with the files and lines that call it.

Bash is read through shfmt's syntax tree, Python through `ast`, JavaScript by its child_process
calls. A command counts where it runs on this machine: `kubectl exec POD -- kcat` or
`chroot ROOT cmd` run their command elsewhere, `sudo`, `env`, `nsenter`, `ip netns exec` and the
project's own functions that run their arguments (`in_netns cmd`, `wait_for WHAT SECS cmd`) run
it here. Commands given as paths (`"$K8S_BIN/kubelet"`, `"$CACHE/venv/bin/pytest"`) are the
project's own and not looked up on PATH.

Run by scripts/check-tools, which makes the fresh root and installs shfmt:
    python3 scripts/check_tools.py --root ROOT --shfmt SHFMT
"""

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCANNED = ["scripts", "e2e", "tests"]
SKIPPED_DIRS = {"node_modules", "__pycache__", ".venv", "venv", "generated"}
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BASH_BUILTINS = set(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare "
    "dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill "
    "let local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt "
    "source suspend test times trap true type typeset ulimit umask unalias unset wait".split()
)
# Parameter expansions with any of these are more than a plain `$NAME`.
PARAM_MODIFIERS = {"Exp", "Index", "Slice", "Repl", "Length", "Width", "Excl", "Names", "NestedParam"}
SUBPROCESS_SPAWNERS = {"run", "Popen", "call", "check_call", "check_output"}
JS_SPAWN = re.compile(r"\b(execFileSync|execFile|spawnSync|spawn|execSync|exec)\(\s*([\"'`])([^\"'`$]*)\2")


@dataclass
class Tok:
    """One word of a command line: its value when it is literal, its literal start, and the
    parameter it is when it is just `$NAME` ("@" for the function's arguments)."""

    lit: str | None
    line: int
    head: str = ""
    param: str | None = None

    def __post_init__(self):
        if self.lit is not None:
            self.head = self.lit


def skip_options(toks, i, with_value=()):
    """The index of the first word from i on that is not an option (or an option's value)."""
    while i < len(toks):
        head = toks[i].head
        if toks[i].lit == "--":
            return i + 1
        if not head.startswith("-") or head == "-":
            return i
        i += 2 if toks[i].lit in with_value else 1
    return i


def wrapped_command(name, toks, i):
    """For a command that runs another one here (sudo, env, nsenter, ...), the index of that
    other command in toks, where toks[i] is the wrapper; None for any other command."""
    j = i + 1
    if name == "sudo":
        return skip_options(toks, j, {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-T", "-U"})
    if name == "env":
        j = skip_options(toks, j, {"-u", "-C"})
        while j < len(toks) and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", toks[j].head):
            j += 1
        return j
    if name == "nsenter":
        return skip_options(toks, j, {"-t", "--target", "-S", "--setuid", "-G", "--setgid"})
    if name == "setsid":
        return skip_options(toks, j)
    if name == "timeout":
        return skip_options(toks, j, {"-s", "--signal", "-k", "--kill-after"}) + 1
    if name == "xargs":
        return skip_options(toks, j, {"-I", "-n", "-P", "-d", "-a", "-s", "-L", "-E"})
    if name == "ip" and [t.lit for t in toks[j : j + 2]] == ["netns", "exec"]:
        return j + 3
    return None


@dataclass
class Function:
    """A function of the project's own: runs its arguments as a command after `shift` of them
    when it is a runner."""

    shift: int = 0
    runner: bool = False


@dataclass
class Scope:
    """What a command line is resolved against: the visible functions and the literal values
    of variables (None where a variable also gets a computed value)."""

    path: Path
    functions: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)


class Finder:
    def __init__(self):
        self.uses = defaultdict(set)  # command -> {(path, line)}

    def use(self, name, path, line):
        self.uses[name].add((path.relative_to(REPO).as_posix(), line))

    def resolve(self, toks, scope, func, on_trap=None):
        """Records the commands that the command line toks runs here. func is the Function whose
        body holds it; a plain "$@" in command position makes that function a runner."""
        i = 0
        while i < len(toks):
            tok = toks[i]
            if tok.param in ("@", "*"):
                if func is not None:
                    func.runner = True
                return
            if tok.param is not None:
                values = scope.values.get(tok.param)
                for value in values or []:
                    words = [Tok(w, tok.line) for w in value.split()]
                    self.resolve(words + toks[i + 1 :], scope, func, on_trap)
                return
            name = tok.lit
            if name is None or "/" in name:
                return
            if name in scope.functions:
                f = scope.functions[name]
                if not f.runner:
                    return
                i += 1 + f.shift
                continue
            if name == "command":
                j = skip_options(toks, i + 1)
                if any(t.lit in ("-v", "-V") for t in toks[i + 1 : j]):
                    for t in toks[j:]:
                        if t.lit and "/" not in t.lit and t.lit not in BASH_BUILTINS | scope.functions.keys():
                            self.use(t.lit, scope.path, t.line)
                    return
                i = j
                continue
            if name == "exec":
                i = skip_options(toks, i + 1, {"-a"})
                continue
            if name == "trap" and on_trap and i + 2 < len(toks) and toks[i + 1].lit and toks[i + 1].lit != "-":
                on_trap(toks[i + 1].lit, tok.line)
            if name in BASH_BUILTINS:
                return
            self.use(name, scope.path, tok.line)
            j = wrapped_command(name, toks, i)
            if j is None:
                return
            i = j


# --- bash ---------------------------------------------------------------------------------

def is_bash(path):
    if path.suffix == ".sh":
        return True
    if path.suffix:
        return False
    with open(path, "rb") as f:
        first = f.readline()
    return first.startswith(b"#!") and (b"bash" in first or first.rstrip().endswith(b"/sh"))


class Bash:
    def __init__(self, shfmt, finder):
        self.shfmt = shfmt
        self.finder = finder
        self.trees = {}
        self.functions = {}  # path -> {name: Function}

    def parse(self, text, what):
        done = subprocess.run([self.shfmt, "-ln", "bash", "--to-json"], input=text, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"shfmt cannot parse {what}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def tree(self, path):
        if path not in self.trees:
            self.trees[path] = self.parse(path.read_text(), path)
        return self.trees[path]

    @staticmethod
    def nodes(node, types):
        """Every node of one of types under node, outermost first."""
        if isinstance(node, dict):
            if node.get("Type") in types:
                yield node
            for value in node.values():
                yield from Bash.nodes(value, types)
        elif isinstance(node, list):
            for value in node:
                yield from Bash.nodes(value, types)

    @staticmethod
    def tok(word):
        parts = word.get("Parts", [])
        line = word["Pos"]["Line"]
        flat = []
        for p in parts:
            flat.extend(p.get("Parts", []) if p["Type"] == "DblQuoted" else [p])
        if len(flat) == 1 and flat[0]["Type"] == "ParamExp" and not PARAM_MODIFIERS & flat[0].keys():
            return Tok(None, line, param=flat[0]["Param"]["Value"])
        text = []
        for p in flat:
            if p["Type"] not in ("Lit", "SglQuoted"):
                return Tok(None, line, head="".join(text))
            text.append(p["Value"])
        return Tok("".join(text), line)

    def sourced(self, path):
        """The files that path sources (`. "$(dirname "$0")/lib.sh"`): the literal end of the
        argument, looked up from path's folder upwards."""
        found = []
        for call in self.nodes(self.tree(path), {"CallExpr"}):
            args = call.get("Args", [])
            if len(args) < 2 or self.tok(args[0]).lit not in (".", "source"):
                continue
            last = args[1]["Parts"][-1]
            if last["Type"] == "DblQuoted":
                last = last["Parts"][-1]
            if last["Type"] != "Lit":
                continue
            tail = last["Value"].lstrip("/")
            for folder in [path.parent, *path.parent.parents]:
                if (folder / tail).is_file():
                    found.append((folder / tail).resolve())
                    break
                if folder == REPO:
                    break
        return found

    def scope(self, path):
        """Functions and variable values of path and of the files it sources, its own last so
        that they win."""
        scope = Scope(path)
        order = []

        def visit(p):
            if p not in order:
                order.append(p)
                for q in self.sourced(p):
                    visit(q)

        visit(path)
        for p in reversed(order):
            scope.functions.update(self.declared(p))
            for node in self.nodes(self.tree(p), {"CallExpr", "DeclClause"}):
                for a in node.get("Assigns", []) + [x for x in node.get("Args", []) if "Name" in x]:
                    name = a["Name"]["Value"]
                    value = self.tok(a["Value"]).lit if "Value" in a else ""
                    if a.get("Array") or value is None or scope.values.get(name, []) is None:
                        scope.values[name] = None
                    else:
                        scope.values.setdefault(name, []).append(value)
        return scope

    def declared(self, path):
        if path not in self.functions:
            functions = {}
            for decl in self.nodes(self.tree(path), {"FuncDecl"}):
                f = Function()
                for call in self.nodes(decl["Body"], {"CallExpr"}):
                    args = [self.tok(w).lit for w in call.get("Args", [])]
                    if args[:1] == ["shift"]:
                        f.shift += int(args[1]) if len(args) > 1 and args[1] else 1
                functions[decl["Name"]["Value"]] = f
            self.functions[path] = functions
        return self.functions[path]

    def walk(self, node, scope, func, line_offset=0):
        if isinstance(node, list):
            for value in node:
                self.walk(value, scope, func, line_offset)
            return
        if not isinstance(node, dict):
            return
        if node.get("Type") == "FuncDecl":
            self.walk(node["Body"], scope, scope.functions[node["Name"]["Value"]], line_offset)
            return
        if node.get("Type") == "CallExpr" and node.get("Args"):
            toks = [self.tok(w) for w in node["Args"]]
            for t in toks:
                t.line += line_offset

            def on_trap(code, line):
                self.walk(self.parse(code, f"the trap at {scope.path}:{line}"), scope, func, line - 1)

            self.finder.resolve(toks, scope, func, on_trap)
        for key, value in node.items():
            if key not in ("Pos", "End"):
                self.walk(value, scope, func, line_offset)

    def runners(self):
        return [f.runner for fs in self.functions.values() for f in fs.values()]

    def scan(self, paths):
        scopes = {p: self.scope(p) for p in paths}
        # A function is a runner once a "$@" of it reaches command position, which can go through
        # another runner (`f() { in_netns "$@"; }`): walk again until no new runner turns up.
        # Commands found on an earlier walk stay found.
        while True:
            before = self.runners()
            for p in paths:
                self.walk(self.tree(p), scopes[p], None)
            if self.runners() == before:
                return


# --- Python -------------------------------------------------------------------------------

class Python:
    """subprocess calls whose argv starts with a literal, shutil.which("x"), and calls of the
    module's own functions that hand their *args to subprocess (`run("ip", ...)`)."""

    def __init__(self, finder):
        self.finder = finder

    @staticmethod
    def called(call, module, names):
        f = call.func
        return (isinstance(f, ast.Attribute) and f.attr in names
                and isinstance(f.value, ast.Name) and f.value.id == module)

    @staticmethod
    def elements(elts, vararg):
        out = []
        for e in elts:
            if isinstance(e, ast.Constant) and isinstance(e.value, str):
                out.append(Tok(e.value, e.lineno))
            elif isinstance(e, ast.Starred) and isinstance(e.value, ast.Name) and e.value.id == vararg:
                out.append(Tok(None, e.lineno, param="@"))
            else:
                out.append(Tok(None, e.lineno))
        return out

    def alternatives(self, expr, fn):
        """The command lines (lists of Tok) that an argv expression inside fn can be: a list, the
        function's *args, or a local variable assigned such lists (`x if c else y`, `a + b`)."""
        vararg = fn.args.vararg.arg if fn and fn.args.vararg else None
        if isinstance(expr, (ast.List, ast.Tuple)):
            return [self.elements(expr.elts, vararg)]
        if isinstance(expr, ast.Name) and expr.id == vararg:
            return [[Tok(None, expr.lineno, param="@")]]
        if isinstance(expr, ast.Name) and fn is not None:
            values = [n.value for n in ast.walk(fn) if isinstance(n, ast.Assign)
                      and any(isinstance(t, ast.Name) and t.id == expr.id for t in n.targets)]
            return [alt for v in values for alt in self.alternatives(v, fn)]
        if isinstance(expr, ast.IfExp):
            return self.alternatives(expr.body, fn) + self.alternatives(expr.orelse, fn)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return [a + b for a in self.alternatives(expr.left, fn) for b in self.alternatives(expr.right, fn)]
        return []

    def scan(self, path):
        tree = ast.parse(path.read_text(), str(path))
        enclosing = {}  # node -> the innermost function around it
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(fn):
                    enclosing[n] = fn
        runners = defaultdict(Function)  # by function name
        # argv words are program names, never the module's functions: resolve without them.
        scope = Scope(path)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        # As for bash: again until no new runner turns up.
        while True:
            before = [f.runner for f in runners.values()]
            for call in calls:
                fn = enclosing.get(call)
                func = runners[fn.name] if fn else None
                if self.called(call, "subprocess", SUBPROCESS_SPAWNERS):
                    argv = [k.value for k in call.keywords if k.arg == "args"] + call.args[:1]
                    for toks in self.alternatives(argv[0], fn) if argv else []:
                        self.finder.resolve(toks, scope, func)
                elif self.called(call, "shutil", {"which"}) and call.args:
                    if isinstance(call.args[0], ast.Constant):
                        self.finder.use(call.args[0].value, path, call.lineno)
                elif isinstance(call.func, ast.Name) and call.func.id in runners and runners[call.func.id].runner:
                    vararg = fn.args.vararg.arg if fn and fn.args.vararg else None
                    self.finder.resolve(self.elements(call.args, vararg), scope, func)
            if [f.runner for f in runners.values()] == before:
                return


def scan_js(path, finder):
    """child_process calls with a literal program (or, for exec, a literal shell command)."""
    text = path.read_text()
    if "child_process" not in text:
        return
    for m in JS_SPAWN.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        words = m.group(3).split() if m.group(1) in ("exec", "execSync") else [m.group(3)]
        finder.resolve([Tok(w, line) for w in words], Scope(path), None)


# --- where each command comes from ---------------------------------------------------------

def read_table(path):
    """Lines of a list file without comments, split into words."""
    rows = []
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            rows.append(words)
    return rows


def in_root(root, script, args):
    done = subprocess.run(
        ["chroot", root, "/usr/bin/env", "-i", f"PATH={ROOT_PATH}", "/bin/sh", "-c", script, "sh", *args],
        capture_output=True, text=True, check=True,
    )
    return [line.split("|") for line in done.stdout.splitlines()]


def from_fresh_root(root, tools):
    """command -> the package that has it, for the commands found in the fresh root."""
    found = dict(in_root(root, 'for t; do p=$(command -v "$t") && echo "$t|$p"; done', tools))
    # dpkg knows a file by the path its package ships, which can be a link's target or, with
    # the merged /usr, the path without /usr.
    owner = ('for p; do r=$(readlink -f "$p"); '
             'echo "$p|$(dpkg -S "$p" "$r" "${r#/usr}" 2>/dev/null | head -1 | cut -d: -f1)"; done')
    packages = dict(in_root(root, owner, sorted(set(found.values()))))
    return {t: packages[p] or f"{p} (no package)" for t, p in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="a bookworm root with scripts/apt-packages installed")
    parser.add_argument("--shfmt", required=True)
    args = parser.parse_args()

    finder = Finder()
    files = sorted(p for d in SCANNED for p in (REPO / d).rglob("*")
                   if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(REPO).parts))
    Bash(args.shfmt, finder).scan([p for p in files if is_bash(p)])
    python = Python(finder)
    for p in files:
        if p.suffix == ".py":
            python.scan(p)
        elif p.suffix in (".js", ".mjs", ".cjs"):
            scan_js(p, finder)

    listed = {row[0] for row in read_table(REPO / "scripts/apt-packages")}
    minbase = set((Path(args.root) / ".minbase-packages").read_text().split())
    declared = {row[0]: row[1:] for row in read_table(REPO / "scripts/other-tools")}
    apt = from_fresh_root(args.root, sorted(t for t in finder.uses if t not in declared))

    rows, problems = [], []
    for tool in sorted(finder.uses):
        where = sorted(finder.uses[tool])
        if tool in declared:
            kind, *rest = declared[tool]
            if kind == "base":
                source = "machine image"
                if shutil.which(tool) is None:
                    problems.append(f"{tool}: on the machine image says scripts/other-tools, but not on PATH here")
            elif kind == "built":
                source = f"built by {rest[0]}"
                step = REPO / rest[0]
                if not step.is_file() or not re.search(rf"\b{re.escape(tool)}\b", step.read_text()):
                    problems.append(f"{tool}: declared as built by {rest[0]}, which does not mention it")
            elif kind == "optional":
                source = "optional, where present"
            else:
                source = "?"
                problems.append(f"{tool}: unknown kind {kind!r} in scripts/other-tools (base, built or optional)")
        elif tool in apt:
            pkg = apt[tool]
            source = (f"apt: {pkg}" if pkg in listed else f"Debian minbase: {pkg}" if pkg in minbase
                      else f"apt: {pkg}, a dependency of scripts/apt-packages")
        else:
            source = "NOWHERE"
            problems.append(f"{tool}: not installed by scripts/apt-packages nor declared in scripts/other-tools; "
                            f"called at {', '.join(f'{p}:{n}' for p, n in where)}")
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        rows.append((tool, source, f"{where[0][0]}:{where[0][1]}{more}"))
    for tool, (kind, *_) in declared.items():
        if tool not in finder.uses:
            problems.append(f"{tool}: declared in scripts/other-tools ({kind}) but nothing calls it")

    width = [max(len(r[i]) for r in rows) for i in range(2)]
    print(f"{'command':{width[0]}}  {'comes from':{width[1]}}  called at")
    for tool, source, at in rows:
        print(f"{tool:{width[0]}}  {source:{width[1]}}  {at}")
    if problems:
        print(f"\n{len(problems)} problem(s):", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"\nall {len(rows)} commands that the scripts and tests call come from somewhere on a fresh machine")


if __name__ == "__main__":
    main()
