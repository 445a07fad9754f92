"""The project's own imports form no cycle: module level and function level alike."""
import ast
import os

from common.config import REPO_ROOT

PACKAGES = ('common', 'gan', 'transfer', 'launch')


def _modules() -> dict[str, str]:
  """Dotted module name -> file path for every module of the packages."""
  out = {}
  for pkg in PACKAGES:
    for root, _, files in os.walk(os.path.join(REPO_ROOT, pkg)):
      for f in files:
        if f.endswith('.py'):
          rel = os.path.relpath(os.path.join(root, f), REPO_ROOT)[:-3].split(os.sep)
          name = '.'.join(rel[:-1] if rel[-1] == '__init__' else rel)
          out[name] = os.path.join(root, f)
  return out


def _imports(path: str, name: str, modules: dict[str, str]) -> set[str]:
  """Project modules `path` imports anywhere in its body, with the packages they run."""
  is_pkg = path.endswith('__init__.py')
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    targets = []
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parts = name.split('.')[:len(name.split('.')) - node.level + (1 if is_pkg else 0)]
        base = '.'.join(parts + ([base] if base else []))
      subs = [f'{base}.{a.name}' for a in node.names]
      # `from a import b` runs a, and a.b when that is a module.
      targets = [t for t in subs if t in modules] or [base]
      if any(t not in modules for t in subs):
        targets.append(base)
    for t in targets:
      parts = t.split('.')
      for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too...
        prefix = '.'.join(parts[:i])
        # ...unless the importer lives inside a (its package is initialised by then).
        if prefix in modules and (i == len(parts) or not name.startswith(prefix + '.')):
          found.add(prefix)
  found.discard(name)
  return found


def import_cycles() -> list[list[str]]:
  modules = _modules()
  graph = {m: _imports(p, m, modules) for m, p in modules.items()}
  cycles, state = [], {}

  def visit(m, stack):
    state[m] = 'open'
    stack.append(m)
    for n in sorted(graph[m]):
      if state.get(n) == 'open':
        cycles.append(stack[stack.index(n):] + [n])
      elif n not in state:
        visit(n, stack)
    stack.pop()
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m, [])
  return cycles


def test_the_project_has_no_import_cycle():
  cycles = import_cycles()
  assert not cycles, 'import cycles: ' + '; '.join(' -> '.join(c) for c in cycles)


def test_the_cycle_finder_sees_function_level_imports(tmp_path, monkeypatch):
  # A cycle hidden behind a function-local import, as the project once had.
  pkg = tmp_path / 'gan'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  (pkg / 'a.py').write_text('from gan import b\n')
  (pkg / 'b.py').write_text('def f():\n  from gan import a\n  return a\n')
  monkeypatch.setitem(globals(), 'REPO_ROOT', str(tmp_path))
  cycles = import_cycles()
  assert ['gan.a', 'gan.b', 'gan.a'] in cycles

