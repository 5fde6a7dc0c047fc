"""Running the dashboard's pages in-process (streamlit.testing AppTest)."""

from __future__ import annotations

import functools
import json
from unittest import mock

import pandas as pd
from streamlit.runtime.scriptrunner import RerunData
from streamlit.testing.v1 import AppTest, local_script_runner

from tests.dashboard.conftest import APP


def open_page(monkeypatch, url: str, view: str | None = None, **params) -> AppTest:
    """Run the app on `url` at page `view` (None: the default page, Sweeps) with these query
    parameters (a list: a repeated one), and check it raised nothing."""
    monkeypatch.setenv("BENCHSWEEP_DB", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    if view:
        at.switch_page(f"views/{view}.py")
    at.query_params = {k: v if isinstance(v, list) else str(v) for k, v in params.items()}
    at.run()
    assert not at.exception, at.exception[0].value
    return at


def charts(at: AppTest) -> list[dict]:
    """The page's Altair charts as Vega-Lite specs, each with its (first) data as `rows`
    (records), and every dataset's in `datasets_rows`."""
    out = []
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        frames = [arrow_to_frame(d.data.data) for d in c.proto.datasets]
        spec["rows"] = frames[0].to_dict("records") if frames else []
        spec["datasets_rows"] = [f.to_dict("records") for f in frames]
        out.append(spec)
    return out


def arrow_to_frame(data: bytes) -> pd.DataFrame:
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pandas()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def poll(at: AppTest) -> AppTest:
    """Run the page's live poll (dashboard.common.follow) once, as the browser's timer does
    every POLL_S: its fragment alone, which reruns the whole page where the database
    changed. AppTest itself runs only whole pages, so the fragment is queued by hand (through
    its private fragment storage: the newest registered, as a page that st.stop()s leaves
    the one of the page before registered). The tree then holds what this run drew: the page
    where the poll reran it, else nothing."""
    storage = at._fragment_storage
    fragment = max(storage._ids_by_target_key["live"],
                   key=storage._registration_sequence_by_id.__getitem__)
    rerun = functools.partial(RerunData, fragment_id_queue=[fragment], is_auto_rerun=True)
    with mock.patch.object(local_script_runner, "RerunData", rerun):
        at.run()
    assert not at.exception, at.exception[0].value
    return at
