"""Template blocks rendered once for what they read, and reused in every digest of a run.

A fresh paper comes in many readers' digests, and most of its card (title, authors, links)
reads the same values in each: only the reasons it matched and the highlighted abstract are
the reader's own. So each block of a template is looked at once, when it loads: when its
output can only depend on the values it reads (attribute paths such as ``e.title`` or
``p.upvotes``, no calls, no random filter, no macros or includes), it is *memoizable*, and a
run renders it once per distinct tuple of those values. Anything else is rendered each time,
as written. Nothing here knows what a card shows: a template author may add, move or rename
blocks, and the analysis finds what each one reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter
from typing import Any

from jinja2 import Environment, nodes
from jinja2.utils import missing

AttributePath = tuple[str, ...]
BlockFunction = Callable[[Any], Iterator[str]]

# Node types whose result may depend on more than the values read, or that change the context.
_UNSAFE = (nodes.Call, nodes.Block, nodes.Include, nodes.Import, nodes.FromImport, nodes.Macro,
           nodes.CallBlock, nodes.Extends, nodes.NSRef, nodes.ContextReference,
           nodes.DerivedContextReference, nodes.EvalContextModifier, nodes.ExprStmt)
_IMPURE_FILTERS = frozenset({"random"})
_CAPACITY = 4096  # entries a run keeps: the cards of a few hundred fresh papers, a few MB at most


def memoizable_blocks(environment: Environment, source: str,
                      skip: frozenset[str] = frozenset()) -> dict[str, tuple[AttributePath, ...]]:
    """Each block of ``source`` (but those in ``skip``) whose output depends only on the
    attribute paths it reads, with those paths."""
    found = {}
    for block in environment.parse(source).find_all(nodes.Block):
        if block.name not in skip and (paths := _inputs(block)) is not None:
            found[block.name] = paths
    return found


def _inputs(block: nodes.Block) -> tuple[AttributePath, ...] | None:
    if any(True for _ in block.find_all(_UNSAFE)):
        return None
    names = [n.name for n in block.find_all((nodes.Filter, nodes.Test))]
    names += [n.value for n in block.find_all(nodes.Const)]  # a filter handed to map() as a string
    if any(name in _IMPURE_FILTERS for name in names if isinstance(name, str)):
        return None
    stored = {n.name for n in block.find_all(nodes.Name) if n.ctx in ("store", "param")}
    loops = {id(n) for loop in block.find_all(nodes.For) for part in (*loop.body, *loop.else_)
             for n in part.find_all(nodes.Name) if n.name == "loop"}
    paths: set[AttributePath] = set()

    def visit(node: nodes.Node) -> None:
        path = _path(node)
        if path is not None and path[0] not in stored and id(_root(node)) not in loops:
            paths.add(path)
            return
        for child in node.iter_child_nodes():
            visit(child)

    for child in block.body:
        visit(child)
    return tuple(sorted(paths))


def _root(node: nodes.Node) -> nodes.Node:
    while isinstance(node, nodes.Getattr):
        node = node.node
    return node


def _path(node: nodes.Node) -> AttributePath | None:
    """``e.marks.title`` as ("e", "marks", "title"); None if the node is no such chain."""
    attrs: list[str] = []
    while isinstance(node, nodes.Getattr):
        attrs.append(node.attr)
        node = node.node
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return (node.name, *reversed(attrs))
    return None


class BlockMemo:
    """What memoizable blocks rendered in one run, by block and the values they read."""

    __slots__ = ("_rendered",)

    def __init__(self) -> None:
        self._rendered: dict[tuple[Any, ...], str] = {}

    def wrap(self, environment: Environment, name: str, paths: tuple[AttributePath, ...],
             function: BlockFunction) -> BlockFunction:
        """``function`` (a compiled block) answering from the memo when it read these values before."""
        read = _reader(environment, name, paths)

        def block(context: Any) -> Iterator[str]:
            key = read(context)
            try:
                text = None if key is None else self._rendered.get(key)
            except TypeError:  # an unhashable value: nothing to memoize
                key = None
            if key is None:
                yield from function(context)
                return
            if text is None:
                if len(self._rendered) >= _CAPACITY:
                    self._rendered.clear()
                text = self._rendered[key] = "".join(function(context))
            yield text

        return block

    def install(self, environment: Environment, blocks: Mapping[str, tuple[AttributePath, ...]], context: Any) -> None:
        """Route the context's memoizable blocks through the memo."""
        for name, paths in blocks.items():
            function = context.blocks[name][0]
            context.blocks[name] = [self.wrap(environment, name, paths, function)]


def _reader(environment: Environment, name: str,
            paths: tuple[AttributePath, ...]) -> Callable[[Any], tuple[Any, ...] | None]:
    """A function of a block's context giving the values the block reads; None when one is
    missing (the block then renders as written, and says what is wrong if anything is)."""
    roots: dict[str, list[tuple[str, ...]]] = {}
    for root, *attrs in paths:
        roots.setdefault(root, []).append(tuple(attrs))
    # Our own templates read attributes with plain getattr, as Jinja does first, so all of a
    # name's paths are read in one call; a sandboxed template's reads go through the sandbox,
    # as its own would.
    fast = type(environment) is Environment
    plan = [(root, _getter(attrs) if fast and all(attrs) else None, tuple(attrs)) for root, attrs in roots.items()]

    def read(context: Any) -> tuple[Any, ...] | None:
        values: list[Any] = [name]
        try:
            for root, get, attrs in plan:
                value = context.resolve_or_missing(root)
                if value is missing:
                    return None
                found = _follow(environment, value, attrs, get)
                # Markup("a") equals "a", but renders otherwise: the types are part of the key.
                values += (found, tuple(map(type, found)))
        except Exception:  # an undefined attribute: nothing to memoize
            return None
        return tuple(values)  # hashed once, by the memo's lookup

    return read


def _getter(attrs: list[tuple[str, ...]]) -> Callable[[Any], tuple[Any, ...]]:
    """One C call reading every path below a name, as a tuple (attrgetter of one path gives it bare)."""
    get = attrgetter(*(".".join(path) for path in attrs))
    return get if len(attrs) > 1 else lambda value: (get(value),)


def _follow(environment: Environment, value: Any, attrs: tuple[tuple[str, ...], ...],
            get: Callable[[Any], tuple[Any, ...]] | None) -> tuple[Any, ...]:
    """The values at ``attrs`` below ``value``: in one call when we may, else as Jinja reads them."""
    if get is not None:
        try:
            return get(value)
        except AttributeError:  # maybe an item, which Jinja's getattr tries next
            pass
    found = []
    for path in attrs:
        item = value
        for attr in path:
            item = environment.getattr(item, attr)
        found.append(item)
    return tuple(found)
