"""A YAML loader with YAML 1.2 (core schema) scalars on top of PyYAML's safe loader.

PyYAML implements YAML 1.1, where ``1e-3`` is a string (no dot), ``yes``/``no``/``on``/``off`` are
booleans and ``010`` is octal 8. Protocols are written by people who expect ``1e-3`` to be a number,
``yes`` to be the word yes, and ``010`` to be ten, which is what YAML 1.2 says. Only the implicit
resolvers for bool, int and float change; everything else is ``yaml.SafeLoader``.

Two guards run on the composed document, before anything is built from it (a :class:`YamlProblem`
names the field): a key given twice in one mapping is refused (PyYAML keeps the last one silently),
and aliases (``*name``) may not expand the document beyond :data:`MAX_YAML_VALUES` values (a
"billion laughs" document of a few lines expands to 10^9 values) nor refer to themselves.
"""
from __future__ import annotations

import re

import yaml

#: at most this many values (scalars, lists and mappings, aliases expanded) in one YAML document
MAX_YAML_VALUES = 100_000


class YamlProblem(yaml.YAMLError):
    """A problem of the document's structure at ``field`` (dotted path; "(top level)" for the root)."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def _key_text(node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag.rsplit(':', 1)[-1]} key>"


def _children(node, path: str):
    """(child node, its path) of a collection node; mapping keys are not fields, only their values."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield value, f"{path}.{_key_text(key)}" if path else _key_text(key)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield value, f"{path}.{i}" if path else str(i)


def _line(node) -> int:
    return node.start_mark.line + 1


def check_document(root) -> None:
    """Refuse duplicate keys, recursive aliases and alias expansion beyond MAX_YAML_VALUES.

    Work is proportional to the written document, not to its expansion: every distinct node is
    visited once, and expanded sizes are memoised per node (capped just above the bound)."""
    cap = MAX_YAML_VALUES + 1
    size: dict[int, int] = {}
    first_path: dict[int, str] = {id(root): ""}
    on_stack: set[int] = set()
    stack = [(root, False)]
    while stack:  # iterative post-order: deep documents do not exhaust Python's recursion
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_stack.discard(nid)
            total = 1
            if isinstance(node, yaml.MappingNode):
                total += sum(size[id(k)] + size[id(v)] for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                total += sum(size[id(v)] for v in node.value)
            size[nid] = min(total, cap)
            continue
        if nid in size:
            continue
        if nid in on_stack:
            raise YamlProblem(first_path.get(nid) or "(top level)",
                              f"an alias refers to the value that contains it (line {_line(node)}); recursive values are not allowed")
        path = first_path.get(nid, "")
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, _ in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    continue
                text = _key_text(key)
                if text in seen:
                    where = f"{path}.{text}" if path else text
                    raise YamlProblem(where, f"duplicate key: given on line {seen[text]} and again on line {_line(key)}; "
                                             "a key may appear only once in a mapping")
                seen[text] = _line(key)
        on_stack.add(nid)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                stack.append((key, False))
        for child, child_path in _children(node, path):
            first_path.setdefault(id(child), child_path)
            stack.append((child, False))
    if size[id(root)] > MAX_YAML_VALUES:
        node, path = root, ""
        while True:  # name the innermost value that is too large
            big = [(c, p) for c, p in _children(node, path) if size[id(c)] > MAX_YAML_VALUES]
            if not big:
                break
            node, path = big[0]
        raise YamlProblem(path or "(top level)",
                          f"this value (line {_line(node)}) expands to more than {MAX_YAML_VALUES} values through YAML "
                          "aliases (*name); a protocol needs far fewer - write the values out")


class Yaml12Loader(yaml.SafeLoader):
    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            check_document(node)
        return node


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (
        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")

Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # '010' is ten, as in YAML 1.2


def _construct_float(loader, node):
    text = loader.construct_scalar(node).lower()
    if text.endswith("inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text.endswith("nan"):
        return float("nan")  # refused by the schemas (finite numbers only), which name the field
    return float(text)


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(text: str):
    """Parse YAML text with YAML 1.2 scalars (safe: no arbitrary objects)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - Yaml12Loader derives from SafeLoader


def dump_yaml(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
