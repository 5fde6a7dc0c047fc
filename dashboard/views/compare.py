"""Compare: two sweeps, or two variants, side by side on matching configurations, each ratio
with its 95% interval (Fieller) and verdict. Pairs that cannot be compared (another
workload, model or GPU) are greyed out with the reason."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import follow, md, param, store
from db.read import stats
from db.read.profiles import category_changes, profiled_steps
from db.read.results import results_frame, summarize
from db.read.sweeps import sweeps_frame

MODES = ("Two sweeps", "Two variants")

st.title("Compare")
db = store()
change = repr(follow(db))
sweeps = sweeps_frame(db)
if sweeps.empty:
    st.info("No sweeps yet, so nothing to compare. Run one with `orchestrate sweep "
            "sweeps/demo.yaml`.", icon=":material/info:")
    st.stop()
names = sweeps.sort_values("started", ascending=False, kind="stable")["name"].tolist()


def _index(options: list, wanted, default: int) -> int:
    return options.index(wanted) if wanted in options else min(default, len(options) - 1)


@st.cache_data(ttl=60, max_entries=16, show_spinner=False)
def summary_of(url: str, sweep: str, change: str) -> pd.DataFrame:
    """A sweep's summary, computed again once the database `change`d (its token's repr)."""
    return summarize(results_frame(db, sweep), None)


mode = st.segmented_control("compare", MODES, default=MODES[1] if param("variant_a") else
                            MODES[0] if param("b") or len(names) > 1 else MODES[1],
                            key="mode") or MODES[0]
a_sweep = b_sweep = None  # the sweeps A's and B's results are in
if mode == MODES[0]:
    c = st.columns(2)
    a_name = c[0].selectbox("sweep A", names, index=_index(names, param("a"), 1), key="a")
    b_name = c[1].selectbox("sweep B", names, index=_index(names, param("b"), 0), key="b")
    st.query_params.update({"a": a_name, "b": b_name})
    a, b = summary_of(db.url, a_name, change), summary_of(db.url, b_name, change)
    a_sweep, b_sweep = a_name, b_name
    keys = ["variant", "options", "max_num_seqs", "gpu_memory_utilization", "max_model_len"]
    a_label, b_label = f"A: {a_name}", f"B: {b_name}"
else:
    sweep = st.selectbox("sweep", names, index=_index(names, param("a"), 0), key="one")
    summary = summary_of(db.url, sweep, change)
    labelled = summary.assign(label=charts.variant_labels(summary)) if not summary.empty \
        else summary.assign(label=[])
    variants = sorted(labelled["label"].unique()) if not labelled.empty else []
    if len(variants) < 2:
        st.info(f"Sweep {md(sweep)} has results for {len(variants)} variant(s); two are needed.",
                icon=":material/info:")
        st.stop()
    c = st.columns(2)
    va = c[0].selectbox("variant A", variants, index=_index(variants, param("variant_a"), 0),
                        key="va")
    vb = c[1].selectbox("variant B", variants, index=_index(variants, param("variant_b"), 1),
                        key="vb")
    st.query_params.update({"a": sweep, "variant_a": va, "variant_b": vb})
    a, b = labelled[labelled["label"] == va], labelled[labelled["label"] == vb]
    a_sweep = b_sweep = sweep
    keys = ["max_num_seqs", "gpu_memory_utilization", "max_model_len"]
    a_label, b_label = f"A: {va}", f"B: {vb}"

if a.empty or b.empty:
    st.info("One side has no results yet.", icon=":material/hourglass_empty:")
    st.stop()
cmp = charts.compare(a, b, keys)
ok = cmp[cmp["comparable"]]
m = st.columns(3)
m[0].metric("matching configurations", f"{len(ok)} / {len(cmp)}")
if not ok.empty:
    geo = math.exp(sum(math.log(x) for x in ok["ratio"]) / len(ok))
    m[1].metric("B / A (geometric mean)", f"{geo:.3f}×")
    m[2].metric("B distinguishably faster in",
                f"{int((ok['verdict'] == 'B faster').sum())} of {len(ok)}",
                help="configurations where the 95% interval of B / A lies above 1")
else:
    st.warning("No configuration can be compared: see the reasons below.",
               icon=":material/block:")

st.altair_chart(charts.compare_chart(cmp, a_label, b_label, keys), width="stretch")
st.caption("Configurations: " + " · ".join(keys))
interval = [stats.Speedup(r, lo, hi, v).interval_text() if v else "—"
            for r, lo, hi, v in zip(cmp["ratio"], cmp["ratio_low"], cmp["ratio_high"],
                                    cmp["verdict"], strict=True)]
table = cmp[[*keys, "a_tok_s", "b_tok_s", "ratio", "verdict", "a_n", "b_n", "a_gpu", "b_gpu",
             "reason"]].rename(columns={"a_tok_s": "A tok/s", "b_tok_s": "B tok/s",
                                        "ratio": "B / A", "a_n": "A n", "b_n": "B n",
                                        "a_gpu": "A GPU", "b_gpu": "B GPU",
                                        "reason": "not comparable because"})
table.insert(table.columns.get_loc("B / A") + 1, "95% interval", interval)
for col, fmt in (("A tok/s", "{:,.1f}"), ("B tok/s", "{:,.1f}"), ("B / A", "{:.3f}×")):
    table[col] = [fmt.format(v) if not math.isnan(v) else "—" for v in table[col]]
table["max_model_len"] = ["default" if charts.missing(v) else str(int(v))
                          for v in table["max_model_len"]]
if "options" in table:
    table["options"] = table["options"].replace("{}", "")
grey = cmp["comparable"].tolist()


def _style(row: pd.Series) -> list[str]:
    css = "" if grey[row.name] else "color: #9a9a9a; background-color: #f1f1f1"
    return [css] * len(row)


st.dataframe(
    table.style.apply(_style, axis=1).format({"gpu_memory_utilization": "{:g}"}),
    hide_index=True, width="stretch", key="compare_table")
st.caption("Greyed rows ran different work, a different model or on a different GPU: their "
           "figures are shown but not compared.")


st.subheader("Where B gains or loses time, by kernel category")
matched = ok[keys].drop_duplicates()


def _profiled(sweep: str, side: pd.DataFrame) -> pd.DataFrame:
    """The side's profiled steps on the configurations both sides can compare."""
    steps = profiled_steps(db, sweep)
    steps = steps[steps["config"].isin(side["config"])]
    return steps.merge(matched, on=keys) if not steps.empty else steps


changes = category_changes(_profiled(a_sweep, a), _profiled(b_sweep, b))
if changes.empty:
    st.caption("Step profiles on both sides are needed: run the variants with "
               "`profile: kernels` in the sweep file.")
else:
    st.altair_chart(charts.category_change_chart(changes), width="stretch")
    shown = changes.assign(**{"A ms": changes["a_s"] * 1e3, "B ms": changes["b_s"] * 1e3,
                              "B - A ms": changes["delta_s"] * 1e3})
    st.dataframe(shown[["step", "category", "A ms", "B ms", "B - A ms", "ratio"]],
                 hide_index=True, width="stretch", key="category_changes",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("A ms", "B ms", "B - A ms", "ratio")})
    st.caption("Each side's mean over its profiled results on the configurations above that "
               "can be compared: one prefill and one decode step of the workload, profiled "
               "after the timed run.")
