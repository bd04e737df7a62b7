"""Load YAML keeping line numbers, so validation errors can point at file:line.

PyYAML's plain ``safe_load`` forgets where values came from and silently keeps the
last of two duplicate keys; both would hide mistakes in hand-written intent files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from modeltriage.errors import ConfigError

# libyaml's parser when PyYAML was built with it: the pure-Python one takes ~20 s for
# 15,000 exemplars (measured by benchmarks/lint_speed.py), libyaml a small fraction.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _StrictLoader(_SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} (first set on line {seen[key]})",
                key_node.start_mark.name,
                key_node.start_mark.line + 1,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


class YamlDocument:
    """A parsed YAML file: its data plus the node tree used to find line numbers."""

    def __init__(self, path: Path, data: Any, root: Node | None):
        self.path = path
        self.data = data
        self._root = root

    @classmethod
    def read(cls, path: Path) -> YamlDocument:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read file: {exc.strerror}", path) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not valid UTF-8 (byte {exc.start})", path) from None
        try:
            loader = _StrictLoader(text)
            try:
                root = loader.get_single_node()
                data = None if root is None else loader.construct_document(root)
            finally:
                loader.dispose()
        except ConfigError as exc:
            raise ConfigError(exc.detail, path, exc.line) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = None if mark is None else mark.line + 1
            raise ConfigError(f"invalid YAML: {exc.problem or exc.context}", path, line) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", path) from None
        return cls(path, data, root)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line (1-based) of the value at ``loc``, or of its deepest existing parent."""
        node = self._root
        if node is None:
            return None
        best = node.start_mark.line + 1
        for depth, part in enumerate(loc, start=1):
            child: Node | None = None
            if isinstance(node, MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, ScalarNode) and key_node.value == str(part):
                        if depth == len(loc):
                            # "key:" with a block value below: the key's line reads best.
                            return int(key_node.start_mark.line) + 1
                        child = value_node
                        break
            elif (
                isinstance(node, SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                child = node.value[part]
            if child is None:
                return best
            node = child
            best = node.start_mark.line + 1
        return best

    def error(self, message: str, loc: Sequence[str | int] = ()) -> ConfigError:
        return ConfigError(message, self.path, self.line_of(loc))
