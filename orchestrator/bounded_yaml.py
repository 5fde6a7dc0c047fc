"""YAML a user wrote, read within bounds: the file's size and encoding, the nesting depth, the
node count after alias expansion (an alias bomb grows to gigabytes when its values are
serialised later), and duplicate keys, which PyYAML would silently let the last one win.

Every refusal is a BoundedYAMLError with the 1-based line it found, so the sweep file and
the inventory print one line naming the place."""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1 << 20  # a sweep file or inventory is a page of text, not a data set
MAX_DEPTH = 32
MAX_NODES = 100_000  # scalars and collections, every alias counted as what it expands to


class BoundedYAMLError(ValueError):
    def __init__(self, message: str, line: int | None = None):
        self.message, self.line = message, line
        super().__init__(message)


def read_text(path: Path) -> str:
    """The file as text: at most MAX_BYTES, UTF-8. OSError passes through."""
    with path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise BoundedYAMLError(f"larger than {MAX_BYTES >> 10} KiB; this is not a sweep or "
                               f"inventory file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BoundedYAMLError(f"not UTF-8 text (byte {e.start})", line) from None


def load(text: str) -> tuple[yaml.Node | None, object]:
    """The composed node tree (for line numbers) and the plain data of one YAML document.
    yaml.YAMLError passes through for the caller to place."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise BoundedYAMLError(f"larger than {MAX_BYTES >> 10} KiB")
    _check_events(text)  # before anything recursive or expanding runs
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is not None:
        _check_duplicate_keys(node)
    return node, yaml.safe_load(text)


def _check_events(text: str) -> None:
    anchored: dict[str, int] = {}  # anchor -> nodes it expands to
    open_: list[list] = []  # [nodes so far, anchor] of each collection being read
    total = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        line = ev.start_mark.line + 1
        if isinstance(ev, yaml.CollectionStartEvent):
            open_.append([1, ev.anchor])
            if len(open_) > MAX_DEPTH:
                raise BoundedYAMLError(f"nested deeper than {MAX_DEPTH} levels", line)
            total += 1
            continue
        if isinstance(ev, yaml.CollectionEndEvent):
            n, anchor = open_.pop()
        elif isinstance(ev, yaml.ScalarEvent):
            n, anchor = 1, ev.anchor
            total += 1
        elif isinstance(ev, yaml.AliasEvent):
            n, anchor = anchored.get(ev.anchor, 1), None
            total += n
        else:
            continue
        if anchor:
            anchored[anchor] = n
        if open_:
            open_[-1][0] += n
        if total > MAX_NODES:
            raise BoundedYAMLError(f"more than {MAX_NODES:,} values once its aliases are "
                                   f"expanded", line)


def _check_duplicate_keys(root: yaml.Node) -> None:
    stack, seen_nodes = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # an alias: the same node object again
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in lines:
                        raise BoundedYAMLError(
                            f"duplicate key {key.value!r} (lines {lines[key.value]} and "
                            f"{line})", line)
                    lines[key.value] = line
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
