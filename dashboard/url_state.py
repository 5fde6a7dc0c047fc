"""A page's choices in its URL, so a view can be shared: read into the widgets' state when
the page loads, written back whenever they change. A value in a URL is whoever wrote it's
text: one that is not among the choices falls back to the default, with a note for the
page to show (as text; dashboard.common.md)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import streamlit as st


def loading(key: str) -> bool:
    """Whether the page is being loaded (opened, reloaded, followed a link) rather than rerun
    after a change: `key`, a widget the page always draws, has no state yet."""
    return key not in st.session_state


def seed_one(key: str, name: str, options: Sequence[Hashable], default, *,
             from_url: bool) -> str | None:
    """Put the choice of URL parameter `name` (where `from_url`, else `default`) into widget
    `key`'s state; options are matched by their text. Returns a note for a value that is
    not among `options`."""
    wanted = st.query_params.get(name) if from_url else None
    by_text = {str(o): o for o in options}
    st.session_state[key] = by_text.get(wanted, default)
    if wanted and wanted not in by_text:
        return f"{name} {wanted!r} is not one of this page's choices; showing {default}."
    return None


def seed_many(key: str, name: str, options: Sequence[Hashable], *,
              from_url: bool) -> str | None:
    """As seed_one, for a multiselect: every value of the repeated parameter `name` that is
    among `options`; none chosen is the default."""
    wanted = st.query_params.get_all(name) if from_url else []
    by_text = {str(o): o for o in options}
    st.session_state[key] = [by_text[w] for w in dict.fromkeys(wanted) if w in by_text]
    unknown = [w for w in wanted if w not in by_text]
    if unknown:
        return f"{name}: {', '.join(map(repr, unknown))} not among its values; left out."
    return None


def keep_valid(key: str, options: Sequence[Hashable], default) -> None:
    """Drop a widget's state that its options no longer hold (they change with the data)."""
    if key not in st.session_state:
        return
    value = st.session_state[key]
    if isinstance(value, list):
        st.session_state[key] = [v for v in value if v in options]
    elif value not in options:
        st.session_state[key] = default


def write(params: dict[str, str | list[str]]) -> None:
    """Make the URL's parameters `params` (a list: a repeated parameter; "" or []: left out),
    touching it only where it differs, so a rerun with nothing changed sends nothing."""
    wanted = {k: ([v] if v else []) if isinstance(v, str) else list(v)
              for k, v in params.items()}
    wanted = {k: v for k, v in wanted.items() if v}
    current = {k: st.query_params.get_all(k) for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)
