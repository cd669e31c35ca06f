"""libyaml-based loading for the loader: PyYAML's C composer with YAML 1.2's booleans and
duplicate keys refused, each document built straight from its nodes where the data is plain,
and the node tree kept beside the document (``Located``) so that a line is looked up only when
a diagnostic needs one (``locate_node``)."""

from __future__ import annotations

import re
from typing import Any

import yaml


class DuplicateKey(yaml.MarkedYAMLError):
    pass


class FastLoader(yaml.CSafeLoader):
    """libyaml's loader with YAML 1.2's booleans (``yes``, ``on`` are strings, as ruamel reads
    them), refusing duplicate keys as ruamel (and Kubernetes) do."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        # Each scalar's implicit tag, by its text: PyYAML resolves every scalar in Python, by
        # regular expressions (a fifth of loading 30,000 documents), and Istio's YAML repeats
        # most of its scalars (every key, kinds, API versions, protocols).
        self._tags: dict[tuple[str, tuple[bool, bool]], str] = {}
        assert not self.yaml_path_resolvers

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # No path resolvers here (the safe loader has none), so a collection's tag is the
        # default and a scalar's depends on its text and implicitness alone.
        if kind is yaml.ScalarNode:
            key = (value, implicit)
            tag = self._tags.get(key)
            if tag is None:
                tag = self._tags[key] = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
            return tag
        return _SEQ if kind is yaml.SequenceNode else _MAP

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise DuplicateKey(problem=f"duplicate key {key.value!r}", problem_mark=key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep)

    def build(self, node: yaml.Node) -> Any:
        """The document of ``node``, as ``construct_document`` makes it, built directly for the
        plain cases (strings, decimal integers, booleans, nulls, maps without merge keys, lists)
        and by the constructor for every other (floats, timestamps, tags, merges): about three
        times faster for Istio's YAML. Equal results are tested on every YAML file here."""
        try:
            data = self._build(node)
        except RecursionError:  # a cyclic alias: the constructor knows how
            self.constructed_objects, self.recursive_objects, self.state_generators = {}, {}, []
            return self.construct_document(node)
        # What construct_document does after a document: finish deferred objects, forget nodes.
        while self.state_generators:
            generators, self.state_generators = self.state_generators, []
            for generator in generators:
                for _ in generator:
                    pass
        self.constructed_objects, self.recursive_objects = {}, {}
        return data

    def _build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            tag, value = node.tag, node.value
            if tag == _STR:
                return value
            if tag == _INT and (value.isdigit() and (value == "0" or value[0] != "0")):
                return int(value)
            if tag == _BOOL:
                return value in ("true", "True", "TRUE")
            if tag == _NULL:
                return None
            return self.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self._build(child) for child in node.value]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            out: dict[Any, Any] = {}
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                    return self.construct_object(node, deep=True)
                if key_node.value in seen:
                    raise DuplicateKey(problem=f"duplicate key {key_node.value!r}", problem_mark=key_node.start_mark)
                seen.add(key_node.value)
                out[self._build(key_node)] = self._build(value_node)
            return out
        return self.construct_object(node, deep=True)


_STR, _INT, _BOOL, _NULL = ("tag:yaml.org,2002:" + t for t in ("str", "int", "bool", "null"))
_SEQ, _MAP, _MERGE = ("tag:yaml.org,2002:" + t for t in ("seq", "map", "merge"))


class Located(dict):  # type: ignore[type-arg]
    """A parsed document with the node tree it came from, for ``locate``."""

    __slots__ = ("node",)
    node: yaml.Node


FastLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def fast_documents(text: str) -> list[Any] | None:
    """The documents, each a ``Located`` when it is a mapping; None if libyaml refuses the text."""
    loader = FastLoader(text)
    docs: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.build(node)
            if data is None:
                continue
            if not isinstance(data, dict):
                return None  # reported with its line by the round-trip loader
            located = Located(data)
            located.node = node
            docs.append(located)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return docs


def locate_node(root: yaml.Node, path: tuple[str | int, ...]) -> int:
    node, line = root, root.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            hit = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if hit is None:
                break
            key = next(k for k, v in node.value if v is hit)
            line, node = key.start_mark.line + 1, hit
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return int(line)
