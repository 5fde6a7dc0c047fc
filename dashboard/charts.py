"""Pure functions from DataFrames to DataFrames and Altair charts. No Streamlit, no database:
the pages fetch, these shape and draw, and the tests call them directly."""

from __future__ import annotations

import json
import math
from datetime import UTC

import altair as alt
import pandas as pd

from dashboard.pareto import pareto_front
from db.read import stats
from db.read.job_columns import DEFAULT, OPTION_PREFIX, option_columns, plain
from db.read.metrics import OUTPUT_TOK_S, Metric
from db.read.results import BASELINE, MISSING, sample, speedup_text, spread_text
from db.read.sweeps import LOST_ATTEMPT, duration_text
from db.read.telemetry import MARK_COLUMN, MARK_TITLE
from db.read.timeline import ENGINE_START, GENERATE, Bar, Efficiency
from engine.gpu_telemetry import SLOWDOWNS, Telemetry, throttle_reasons

# The matrix axes every sweep has; engine options that vary become axes too.
BASE_AXES = ["variant", "max_num_seqs", "gpu_memory_utilization", "max_model_len"]
# Besides the axes, what a user may want to narrow a sweep down by.
EXTRA_FILTERS = ["gpu_name", "model"]
# What two measurements must share before their throughputs are compared, with the reason
# shown when they do not.
COMPARABLE = (("model", "different model"), ("workload_fingerprint", "different workload"),
              ("gpu_name", "different GPU"))
GREY = "#a0a0a0"
GREY_LIGHT = "#d0d0d0"
START_PHASES = (("imports_s", "imports"), ("load_s", "load"), ("profile_s", "profile"),
                ("compile_s", "compile"),
                ("capture_s", "capture"), ("warmup_s", "warm-up"))


# --- shaping --------------------------------------------------------------------------------

def with_option_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Spread the `options` JSON column into one `option: NAME` column per option name
    (a job without that option gets DEFAULT)."""
    if df.empty or "options" not in df:
        return df
    parsed = [json.loads(o) if isinstance(o, str) else (o or {}) for o in df["options"]]
    return option_columns(df, sorted({k for p in parsed for k in p}))


def filter_axes(df: pd.DataFrame) -> dict[str, list]:
    """Every column a sweep can be filtered by, with its values in order."""
    df = with_option_columns(df)
    axes: dict[str, list] = {}
    cols = BASE_AXES + sorted(c for c in df.columns if c.startswith(OPTION_PREFIX))
    cols += [c for c in EXTRA_FILTERS if c in df]
    for col in cols:
        if col in df and not df.empty:
            values = df[col].dropna().unique().tolist()
            if col == "max_model_len":
                values = [int(v) for v in values]
            axes[col] = sorted(values, key=lambda v: (str(type(v)), v))
    return axes


def apply_filters(df: pd.DataFrame, selected: dict[str, list]) -> pd.DataFrame:
    """Keep rows whose value is among the selected ones, axis by axis; an empty or missing
    selection keeps everything."""
    if df.empty:
        return df
    df = with_option_columns(df)
    mask = pd.Series(True, index=df.index)
    for col, values in selected.items():
        if values and col in df:
            mask &= df[col].isin(values)
    return df[mask]


def variant_labels(summary: pd.DataFrame) -> pd.Series:
    """A label per configuration row naming its engine variant; where one variant ran with
    several option sets (an option was an axis), the options are part of the label."""
    if summary.empty:
        return pd.Series([], dtype=str)
    n_opts = summary.groupby("variant")["options"].transform("nunique")
    return pd.Series([
        v if n == 1 or o == "{}" else f"{v} {o}"
        for v, o, n in zip(summary["variant"], summary["options"], n_opts, strict=True)
    ], index=summary.index)


def best_config(summary: pd.DataFrame, metric: Metric = OUTPUT_TOK_S) -> pd.Series | None:
    """The configuration with the best mean of `metric` (the summary's); None where no
    configuration has it."""
    measured = summary["mean"].dropna() if not summary.empty else summary
    if measured.empty:
        return None
    return summary.loc[measured.idxmax() if metric.higher_is_better else measured.idxmin()]


def rivals(summary: pd.DataFrame, best: pd.Series,
           metric: Metric = OUTPUT_TOK_S) -> pd.DataFrame:
    """The configurations the best one is not distinguishably better than (95% interval of
    the ratio not above 1, or no spread to tell): with any, there is no single winner.
    Only configurations measured on the same model, workload and card compete."""
    same = summary[summary["n"] > 0]
    for col, _ in COMPARABLE:
        same = same[same[col] == best[col]]
    same = same[same.index != best.name]
    return same[[metric.speedup(sample(best), sample(r)).verdict != metric.better
                 for _, r in same.iterrows()]]


def option_axes(df: pd.DataFrame) -> list[str]:
    """The option columns a frame carries (the sweep's option axes)."""
    return [c for c in df.columns if c.startswith(OPTION_PREFIX)]


def speedup_table(summary: pd.DataFrame, metric: Metric = OUTPUT_TOK_S) -> pd.DataFrame:
    """The speedup table: one row per configuration, the figures a reader needs: the mean of
    `metric` (the summary's; missing where no result has it, never 0) with the 95% interval
    of the mean and of the speedup, as text where n = 1 leaves none."""
    axes = option_axes(summary)
    cols = ["variant", "options", *axes, "max_num_seqs", "gpu_mem", "max_model_len", "GPU",
            "n", metric.title, "± 95% CI", "CV", "noisy", "speedup", "speedup (95% interval)",
            "verdict", "note", MARK_TITLE]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    s = summary.sort_values(["max_num_seqs", "gpu_memory_utilization", "variant"],
                            kind="stable")
    rows = [r for _, r in s.iterrows()]
    return pd.DataFrame({
        "variant": s["variant"], "options": s["options"].replace("{}", ""),
        **{a: s[a].astype(str) for a in axes},
        "max_num_seqs": s["max_num_seqs"], "gpu_mem": s["gpu_memory_utilization"],
        "max_model_len": [DEFAULT if pd.isna(v) else str(int(v)) for v in s["max_model_len"]],
        "GPU": s["gpu_name"], "n": s["n"], metric.title: s["mean"],
        "± 95% CI": [f"± {r['ci95']:{metric.fmt}}" if r["n"] > 1 else spread_text(r)
                     for r in rows],
        "CV": [spread_text(r) for r in rows], "noisy": s["noisy"],
        "speedup": s["speedup"].round(3),
        "speedup (95% interval)": [speedup_text(r) for r in rows],
        "verdict": s["verdict"], "note": s["speedup_note"], MARK_TITLE: s[MARK_COLUMN],
    }, columns=cols).reset_index(drop=True)


def compare(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Pair two summaries' configurations on `keys`. A pair whose model, workload or GPU
    differ is kept but marked not comparable, with the reason; a configuration that only one
    side has says so. Columns: keys, a_/b_ figures, ratio (b / a) with its 95% interval
    (ratio_low, ratio_high; db/read/stats.py) and verdict, comparable, reason."""
    cols = [*keys, "a_tok_s", "b_tok_s", "a_n", "b_n", "a_ci95", "b_ci95", "ratio",
            "ratio_low", "ratio_high", "verdict", "comparable", "reason", "a_gpu", "b_gpu"]
    if a.empty and b.empty:
        return pd.DataFrame(columns=cols)
    a_rows = _by_key(a, keys)
    b_rows = _by_key(b, keys)
    out = []
    for key in sorted(set(a_rows) | set(b_rows), key=lambda k: tuple(map(str, k))):
        left, right = list(a_rows.get(key, [])), list(b_rows.get(key, []))
        pairs = []
        # Exact matches first, then whatever is left pairs up with its reason.
        for ra in list(left):
            i = next((i for i, rb in enumerate(right) if not _differences(ra, rb)), None)
            if i is not None:
                pairs.append((ra, right.pop(i)))
                left = [r for r in left if r is not ra]
        while left and right:
            pairs.append((left.pop(0), right.pop(0)))
        pairs += [(ra, None) for ra in left] + [(None, rb) for rb in right]
        for ra, rb in pairs:
            row = dict(zip(keys, key, strict=True))
            for side, r in (("a", ra), ("b", rb)):
                row[f"{side}_tok_s"] = r["mean"] if r is not None else math.nan
                row[f"{side}_n"] = r["n"] if r is not None else 0
                row[f"{side}_ci95"] = r["ci95"] if r is not None else math.nan
                row[f"{side}_gpu"] = r["gpu_name"] if r is not None else ""
            if ra is None or rb is None:
                reason = "only in B" if ra is None else "only in A"
            else:
                reason = "; ".join(_differences(ra, rb))
            row["comparable"] = not reason
            row["reason"] = reason
            ratio = stats.speedup(sample(rb), sample(ra)) if not reason else None
            row["ratio"] = ratio.ratio if ratio else math.nan
            row["ratio_low"] = ratio.low if ratio else math.nan
            row["ratio_high"] = ratio.high if ratio else math.nan
            row["verdict"] = ("B " + ratio.verdict if ratio.verdict != stats.SAME
                              else ratio.verdict) + ("" if ratio.measured
                                                     else f" ({stats.NO_SPREAD})") \
                if ratio else ""
            out.append(row)
    return pd.DataFrame(out, columns=cols)


def _by_key(df: pd.DataFrame, keys: list[str]) -> dict[tuple, list[pd.Series]]:
    rows: dict[tuple, list[pd.Series]] = {}
    for _, r in df.iterrows():
        rows.setdefault(tuple(None if missing(r[k]) else r[k] for k in keys), []).append(r)
    return rows


def missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _differences(ra: pd.Series, rb: pd.Series) -> list[str]:
    out = []
    for col, label in COMPARABLE:
        if ra[col] != rb[col]:
            if col == "workload_fingerprint":
                out.append(f"{label} (fingerprint {ra[col]} vs {rb[col]})")
            else:
                out.append(f"{label} ({ra[col]} vs {rb[col]})")
    return out


def start_breakdown(record: dict) -> pd.DataFrame:
    """A BenchResult's start-up time by phase: the process's start and imports (not part of
    its start_s), then load, profile, compile, capture, warm-up."""
    return pd.DataFrame([{"phase": label, "seconds": float(record.get(key) or 0.0)}
                         for key, label in START_PHASES], columns=["phase", "seconds"])


def sweeps_table(sweeps: pd.DataFrame) -> pd.DataFrame:
    """The Sweeps page's table: newest first, duration as text (`1h 02m over 3 runs`);
    `note` says since when a lost sweep's coordinator is gone, or what stopped it."""
    if sweeps.empty:
        return sweeps
    t = sweeps.sort_values("started", ascending=False, kind="stable").copy()
    t["duration"] = [duration_text(d, n) for d, n in zip(t["duration_s"], t["runs"],
                                                         strict=True)]
    t["link"] = ["sweep?sweep=" + quote(n) for n in t["name"]]
    return t[["name", "state", "note", "progress", "done", "running", "failed", "pending", "total",
              "started", "duration", "hosts", "link"]].reset_index(drop=True)


def quote(text: str) -> str:
    from urllib.parse import quote as q

    return q(str(text), safe="")


# --- charts ---------------------------------------------------------------------------------

# What the heatmap's panels may take of the page's width, its colour legend aside.
HEATMAP_WIDTH_PX = 720


def heatmap(summary: pd.DataFrame, metric: Metric = OUTPUT_TOK_S
            ) -> alt.FacetChart | alt.LayerChart:
    """The mean of `metric` over max_num_seqs × gpu_memory_utilization, one panel per engine
    variant (and per GPU where a sweep ran on several), each cell labelled with its figure
    (MISSING where no result has it). The brighter end of the scale is the better one."""
    df = _chart_frame(summary, metric)
    if _n(df, "max_model_len") > 1:  # one panel per max_model_len too
        df["label"] = df["label"] + "  len " + df["max_model_len"].map(
            lambda v: DEFAULT if pd.isna(v) else str(int(v)))
    base = alt.Chart(df).encode(
        x=alt.X("max_num_seqs:O", title="max_num_seqs"),
        y=alt.Y("gpu_memory_utilization:O", title="gpu_memory_utilization", sort="descending"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("mean:Q", title=metric.title,
                        scale=alt.Scale(scheme="viridis", reverse=not metric.higher_is_better)),
        tooltip=[alt.Tooltip("label:N", title="variant"), "max_num_seqs:O",
                 "gpu_memory_utilization:O", alt.Tooltip("text:N", title=metric.title),
                 alt.Tooltip("ci95:Q", format=metric.fmt, title="± 95% CI"),
                 alt.Tooltip("speedup:Q", format=".2f"), "n:Q", "gpu_name:N"],
    )
    text = base.mark_text(baseline="middle", fontSize=12).encode(
        text="text:N",
        color=alt.condition("datum.bright", alt.value("black"), alt.value("white")),
    )
    width = max(160, 70 * _n(df, "max_num_seqs"))
    layered = alt.layer(rect, text).properties(
        width=width, height=max(90, 45 * _n(df, "gpu_memory_utilization")))
    header = alt.Header(labelFontSize=13)
    if _n(df, "gpu_name") > 1:  # a row per card: the panels of a card side by side
        return layered.facet(column=alt.Column("label:N", title=None, header=header),
                             row=alt.Row("gpu_name:N", title=None)).resolve_scale(color="shared")
    # One card: the panels wrap, so a sweep of many variants fits the page's width.
    return layered.facet(alt.Facet("label:N", title=None, header=header),
                         columns=max(1, HEATMAP_WIDTH_PX // (width + 25))
                         ).resolve_scale(color="shared")


def metric_lines(summary: pd.DataFrame, repeats: pd.DataFrame | None = None,
                 metric: Metric = OUTPUT_TOK_S) -> alt.LayerChart:
    """The mean of `metric` against max_num_seqs: a line of means per series with its 95%
    interval (never below zero), each repeat a point (`repeats`: the results rows; those
    without the figure are left out), a colour per variant (a dash per
    gpu_memory_utilization, max_model_len or GPU where several)."""
    df = _chart_frame(summary, metric).dropna(subset=["mean"])
    df["lo"] = (df["mean"] - df["ci95"].fillna(0)).clip(lower=0)
    df["hi"] = df["mean"] + df["ci95"].fillna(0)
    df["setting"] = _settings(df)
    df["series"] = df["label"] + df["setting"].map(lambda t: f"  {t}" if t else "")
    x = alt.X("max_num_seqs:Q", title="max_num_seqs", scale=alt.Scale(type="log", base=2),
              axis=alt.Axis(values=sorted(df["max_num_seqs"].unique().tolist())))
    scale = alt.Scale(domainMin=0, zero=True)
    y = alt.Y("mean:Q", title=metric.title, scale=scale)
    color = alt.Color("label:N", title="variant", scale=alt.Scale(scheme="tableau10"))
    dash = alt.StrokeDash("setting:N", title="setting", legend=None if not df["setting"].any()
                          else alt.Legend())
    line = alt.Chart(df).mark_line(point=False).encode(
        x=x, y=y, color=color, strokeDash=dash, detail="series:N",
        tooltip=["series:N", "max_num_seqs:Q",
                 alt.Tooltip("mean:Q", format=metric.fmt, title=metric.title),
                 alt.Tooltip("ci95:Q", format=metric.fmt, title="± 95% CI"), "n:Q"])
    band = alt.Chart(df).mark_errorbar(ticks=True).encode(
        x=x, y=alt.Y("lo:Q", title=metric.title, scale=scale),
        y2="hi:Q", color=color, detail="series:N")
    layers = [band, line]
    if repeats is not None and not repeats.empty:
        pts = repeats.assign(value=repeats[metric.column].astype(float) / metric.scale)
        pts = pts.dropna(subset=["value"])
        pts["label"] = _repeat_labels(pts, summary)
        pts["setting"] = _settings(pts)
        layers.append(alt.Chart(pts[["label", "setting", "max_num_seqs", "value",
                                     "repeat"]]).mark_point(filled=True, size=45,
                                                            opacity=0.8).encode(
            x=x, y=alt.Y("value:Q", title=metric.title, scale=scale),
            color=color, tooltip=["label:N", "setting:N", "max_num_seqs:Q", "repeat:Q",
                                  alt.Tooltip("value:Q", format=metric.fmt,
                                              title=metric.title)]))
    return alt.layer(*layers).properties(height=320)


# The front of each group of configurations that may be compared (db/read/results).
_COMPARABLE_GROUP = ["model", "workload_fingerprint", "gpu_name"]


def latency_throughput(summary: pd.DataFrame, latency: Metric) -> pd.DataFrame:
    """Each configuration with both figures as a point: `latency` (its mean) against output
    tok/s (its mean), labelled by max_num_seqs, a series per variant (and setting), and
    whether it is on the Pareto front of the configurations it may be compared with (on the
    same model, workload and card): none has both a lower latency and a higher throughput."""
    cols = ["label", "setting", "series", "max_num_seqs", "latency", "tok_s", "pareto"]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    df = summary.assign(label=variant_labels(summary), latency=summary[f"{latency.key}_mean"],
                        tok_s=summary["output_tok_s_mean"])
    df = df.dropna(subset=["latency", "tok_s"])
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["setting"] = _settings(df)
    df["series"] = df["label"] + df["setting"].map(lambda t: f"  {t}" if t else "")
    df["pareto"] = False
    for _, group in df.groupby(_COMPARABLE_GROUP, dropna=False, sort=False):
        df.loc[group.index, "pareto"] = pareto_front(group["latency"].tolist(),
                                                     group["tok_s"].tolist())
    return df.sort_values(["series", "max_num_seqs"], kind="stable")[cols].reset_index(
        drop=True)


def pareto_chart(points: pd.DataFrame, latency: Metric) -> alt.LayerChart:
    """Output tok/s against a latency, as `vllm bench sweep` draws it: a line per series
    through its max_num_seqs (each point labelled with it), the Pareto-optimal points ringed
    and joined by a dashed front."""
    x = alt.X("latency:Q", title=latency.title, scale=alt.Scale(zero=False))
    y = alt.Y("tok_s:Q", title=OUTPUT_TOK_S.title, scale=alt.Scale(zero=False))
    color = alt.Color("label:N", title="variant", scale=alt.Scale(scheme="tableau10"))
    tip = ["series:N", "max_num_seqs:Q",
           alt.Tooltip("latency:Q", format=latency.fmt, title=latency.title),
           alt.Tooltip("tok_s:Q", format=OUTPUT_TOK_S.fmt, title=OUTPUT_TOK_S.title),
           alt.Tooltip("pareto:N", title="Pareto-optimal")]
    base = alt.Chart(points)
    lines = base.mark_line(point=alt.OverlayMarkDef(filled=True, size=50)).encode(
        x=x, y=y, color=color, detail="series:N", order="max_num_seqs:Q", tooltip=tip)
    labels = base.mark_text(align="left", dx=7, dy=-7, fontSize=11).encode(
        x=x, y=y, text="max_num_seqs:Q", color=color)
    on_front = points[points["pareto"]]
    ring = alt.Chart(on_front).mark_point(shape="circle", size=260, strokeWidth=2,
                                          color="black").encode(x=x, y=y, tooltip=tip)
    front = alt.Chart(on_front.assign(front="Pareto front")).mark_line(
        strokeDash=[4, 3], color="black", interpolate="step-after").encode(
        x=x, y=y, order="latency:Q", detail="front:N")
    return alt.layer(lines, front, ring, labels).properties(height=360)


def speedup_bars(summary: pd.DataFrame, metric: Metric = OUTPUT_TOK_S) -> alt.LayerChart:
    """Each configuration's speedup against the baseline as a bar with its 95% interval
    (Fieller) as an error bar and a rule at 1.0×; coloured by verdict, ties ("not
    distinguishable", or no spread to tell) drawn pale and grey. The baseline's own rows and
    configurations without a speedup are left out."""
    df = summary[summary["speedup"].notna() & (summary["verdict"] != BASELINE)].copy()
    df["label"] = variant_labels(df) if not df.empty else []
    df["setting"] = _settings(df)
    df["config"] = [f"{lab}  max_num_seqs {m}" + (f"  {t}" if t else "")
                    for lab, m, t in zip(df["label"], df["max_num_seqs"], df["setting"],
                                         strict=True)]
    df["text"] = [speedup_text(r) for _, r in df.iterrows()]
    finite = pd.concat([df["speedup"], df["speedup_high"].replace(math.inf, math.nan)])
    cap = max(1.0, float(finite.max())) * 1.15 if finite.notna().any() else 2.0
    df["lo"] = df["speedup_low"].clip(lower=0)
    df["hi"] = df["speedup_high"].clip(upper=cap)  # an unbounded interval reaches the edge
    df["verdict"] = df["verdict"].replace("", stats.SAME)
    df = df[["config", "speedup", "lo", "hi", "verdict", "text", "max_num_seqs"]]
    verdicts = [metric.better, metric.worse, stats.SAME]
    y = alt.Y("config:N", title=None, sort=None, axis=alt.Axis(labelLimit=360))
    bars = alt.Chart(df).mark_bar(height=14).encode(
        y=y, x=alt.X("speedup:Q", title=f"speedup in {metric.label} against the baseline (×)",
                     scale=alt.Scale(zero=True, domainMax=cap)),
        color=alt.Color("verdict:N", title="verdict", scale=alt.Scale(
            domain=verdicts, range=["#2e7d32", "#d62728", GREY_LIGHT])),
        opacity=alt.condition(f"datum.verdict == '{stats.SAME}'", alt.value(0.55),
                              alt.value(0.9)),
        tooltip=["config:N", alt.Tooltip("text:N", title="speedup (95% interval)")])
    interval = alt.Chart(df).mark_errorbar(ticks=True, color="black").encode(
        y=y, x=alt.X("lo:Q", title=None), x2="hi:Q")
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(
        color="black", strokeDash=[5, 3], strokeWidth=1.5).encode(x="x:Q")
    return alt.layer(bars, interval, one).properties(height=alt.Step(20))


def _settings(df: pd.DataFrame) -> pd.Series:
    """What besides variant and max_num_seqs tells a series apart, in a few words."""
    parts = []
    for col, name in (("gpu_memory_utilization", "mem"), ("max_model_len", "len"),
                      ("gpu_name", "")):
        if col in df and df[col].nunique(dropna=False) > 1:
            parts.append(df[col].map(lambda v, n=name: (f"{n} " if n else "")
                                     + (f"{v:g}" if isinstance(v, float) and not pd.isna(v)
                                        else DEFAULT if pd.isna(v) else str(v))))
    if not parts:
        return pd.Series([""] * len(df), index=df.index, dtype=str)
    out = parts[0]
    for p in parts[1:]:
        out = out + "  " + p
    return out


def _repeat_labels(rows: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Each results row's variant label, as variant_labels names its configuration."""
    labels = dict(zip(zip(summary["variant"], summary["options"], strict=True),
                      variant_labels(summary), strict=True))
    return [labels.get((v, o), v) for v, o in zip(rows["variant"], rows["options"],
                                                   strict=True)]


def compare_chart(cmp: pd.DataFrame, a_label: str, b_label: str,
                  keys: list[str]) -> alt.Chart:
    """A and B side by side per configuration; configurations that cannot be compared are
    drawn grey."""
    rows = []
    for _, r in cmp.iterrows():
        config = config_label(r, keys)
        for side, label in (("a", a_label), ("b", b_label)):
            if not math.isnan(r[f"{side}_tok_s"]):
                rows.append({"config": config, "side": label, "tok_s": r[f"{side}_tok_s"],
                             "comparable": bool(r["comparable"]), "reason": r["reason"],
                             "fill": label if r["comparable"] else f"{label} (not comparable)"})
    df = pd.DataFrame(rows, columns=["config", "side", "tok_s", "comparable", "reason", "fill"])
    domain = [a_label, b_label, f"{a_label} (not comparable)", f"{b_label} (not comparable)"]
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("config:N", title=None, sort=None,
                axis=alt.Axis(labelLimit=320)),
        yOffset=alt.YOffset("side:N", sort=[a_label, b_label]),
        x=alt.X("tok_s:Q", title="output tok/s"),
        color=alt.Color("fill:N", title=None, legend=alt.Legend(orient="bottom", columns=2,
                                                                labelLimit=400),
                        scale=alt.Scale(domain=domain,
                                        range=["#4c78a8", "#f58518", GREY_LIGHT, GREY])),
        tooltip=["config:N", "side:N", alt.Tooltip("tok_s:Q", format=",.1f"), "reason:N"],
    ).properties(height=alt.Step(12))


def config_label(row: pd.Series, keys: list[str]) -> str:
    """A configuration in a few words: options as name=value, numbers without noise."""
    parts = []
    for k in keys:
        v = row[k]
        if k == "options":
            opts = json.loads(v) if isinstance(v, str) and v else {}
            v = " ".join(f"{n}={plain(x)}" for n, x in sorted(opts.items()))
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            v = DEFAULT if k == "max_model_len" else ""  # the engine's own, as tables say
        elif isinstance(v, float):
            v = f"{v:g}"
        if v != "":
            parts.append(str(v))
    return " · ".join(parts)


def start_chart(breakdown: pd.DataFrame) -> alt.Chart:
    """Start-up time as one stacked bar, a segment a phase, in the order they happen."""
    df = breakdown.assign(order=range(len(breakdown)), what="start-up")
    return alt.Chart(df).mark_bar(height=28).encode(
        x=alt.X("seconds:Q", title="seconds", stack="zero"),
        y=alt.Y("what:N", title=None),
        color=alt.Color("phase:N", sort=[p for _, p in START_PHASES], title=None,
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        order=alt.Order("order:Q"),
        tooltip=["phase:N", alt.Tooltip("seconds:Q", format=".3f")],
    ).properties(height=50)


def _chart_frame(summary: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The summary's figures a chart draws: the mean of `metric` (NaN where missing) and its
    cell text, and whether its heatmap cell is at the bright end of the scale."""
    df = summary.copy()
    df["label"] = variant_labels(df) if not df.empty else []
    keep = ["label", "variant", "max_num_seqs", "gpu_memory_utilization", "max_model_len",
            "gpu_name", "mean", "ci95", "n", "speedup"]
    df = df[[c for c in keep if c in df]].copy()
    for col in ("mean", "ci95", "speedup"):
        df[col] = df[col].astype(float)
    df["text"] = [MISSING if pd.isna(v) else f"{v:{metric.fmt}}" for v in df["mean"]]
    mid = (df["mean"].min() + df["mean"].max()) / 2 if df["mean"].notna().any() else 0.0
    above = df["mean"] > mid
    df["bright"] = df["mean"].isna() | (above if metric.higher_is_better else ~above)
    return df


def _n(df: pd.DataFrame, col: str) -> int:
    return int(df[col].nunique()) if col in df and not df.empty else 0


# --- the timeline of a sweep ----------------------------------------------------------------

# How a bar's outline marks its attempt's outcome; an attempt of a lost coordinator is
# drawn as lost.
OUTCOME_STROKES = {"succeeded": "#2e7d32", "failed": "#d62728", "lost": "#ff7f0e",
                   "timeout": "#9467bd", "cancelled": GREY, "running": "#1f77b4",
                   LOST_ATTEMPT: "#ff7f0e"}
PHASE_FILLS = {ENGINE_START: GREY, GENERATE: "#202020"}
TIMELINE_COLUMNS = ["part", "lane", "variant", "outcome", "job_id", "attempt",
                    "max_num_seqs", "repeat", "start", "end", "seconds", "held_s", "start_s",
                    "generate_s"]


def timeline_frame(bars: list[Bar]) -> pd.DataFrame:
    """One row per attempt (part "attempt") and per phase inside it ("engine start",
    "generate"), times as naive UTC, in lane order."""
    rows = []
    for b in bars:
        common = {"lane": b.lane, "variant": b.variant, "outcome": b.outcome,
                  "job_id": b.job_id, "attempt": b.attempt, "max_num_seqs": b.max_num_seqs,
                  "repeat": b.repeat, "held_s": b.held_s, "start_s": b.start_s,
                  "generate_s": b.generate_s}
        parts = [("attempt", b.start, b.end), *b.phases()]
        rows += [{**common, "part": part, "start": _naive(f), "end": _naive(t),
                  "seconds": (t - f).total_seconds()} for part, f, t in parts]
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def _naive(t):
    return t.astimezone(UTC).replace(tzinfo=None)


def gantt(frame: pd.DataFrame) -> alt.LayerChart:
    """The timeline: a lane per host and GPU slot, a bar per attempt filled by variant and
    outlined by outcome, the engine start and the timed generate drawn inside it."""
    lanes = sorted(frame["lane"].unique().tolist())
    y = alt.Y("lane:N", title=None, sort=lanes)
    x = alt.X("start:T", title="time (UTC)", scale=alt.Scale(type="utc"))
    tip = [alt.Tooltip("lane:N", title="host / GPU"), "variant:N", "outcome:N",
           alt.Tooltip("job_id:Q", title="job"), "attempt:Q", "max_num_seqs:Q", "repeat:Q",
           alt.Tooltip("utcstart:N", title="from (UTC)"),
           alt.Tooltip("held_s:Q", format=",.1f", title="held s"),
           alt.Tooltip("start_s:Q", format=",.1f", title="engine start s"),
           alt.Tooltip("generate_s:Q", format=",.2f", title="generate s")]
    frame = frame.assign(utcstart=frame["start"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    attempts = frame[frame["part"] == "attempt"]
    phases = frame[frame["part"] != "attempt"]
    outcomes = [o for o in OUTCOME_STROKES if o in set(attempts["outcome"])]
    bars = alt.Chart(attempts).mark_bar(height=20, strokeWidth=2, opacity=0.6).encode(
        x=x, x2="end:T", y=y,
        fill=alt.Fill("variant:N", title="variant", scale=alt.Scale(scheme="tableau10")),
        stroke=alt.Stroke("outcome:N", title="outcome", scale=alt.Scale(
            domain=outcomes, range=[OUTCOME_STROKES[o] for o in outcomes])),
        tooltip=tip)
    inside = alt.Chart(phases).mark_bar(height=8).encode(
        x=x, x2="end:T", y=y,
        fill=alt.Fill("part:N", title="phase", scale=alt.Scale(
            domain=list(PHASE_FILLS), range=list(PHASE_FILLS.values()))),
        tooltip=[alt.Tooltip("part:N", title="phase"),
                 alt.Tooltip("seconds:Q", format=",.2f"), *tip])
    return alt.layer(bars, inside).resolve_scale(fill="independent").properties(
        height=max(60, 30 * len(lanes)))


def efficiency_table(rows: list[Efficiency]) -> pd.DataFrame:
    """The efficiency per variant and overall, as the Sweep page shows it."""
    return pd.DataFrame([{"variant": e.variant, "attempts": e.attempts,
                          "GPU time held (s)": e.held_s, "timed generate (s)": e.generate_s,
                          "efficiency": e.ratio, "engine starts": e.start_share} for e in rows],
                        columns=["variant", "attempts", "GPU time held (s)",
                                 "timed generate (s)", "efficiency", "engine starts"])


def category_chart(categories: pd.DataFrame) -> alt.Chart:
    """A step's time by kernel category (db/read/profiles.step_categories): one stacked bar a
    profiled step, a segment a category, in milliseconds."""
    df = categories[categories["seconds"] > 0].assign(ms=lambda d: d["seconds"] * 1e3)
    return alt.Chart(df).mark_bar(height=24).encode(
        x=alt.X("ms:Q", title="ms a step", stack="zero"),
        y=alt.Y("step:N", title=None, sort=["prefill", "decode"]),
        color=alt.Color("category:N", title=None,
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        tooltip=["step:N", "category:N", alt.Tooltip("ms:Q", format=".3f"),
                 alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=90)


def category_change_chart(changes: pd.DataFrame) -> alt.Chart:
    """B's time a step less A's, category by category (db/read/profiles.category_changes):
    bars left of zero are time B gains."""
    df = changes.assign(delta_ms=changes["delta_s"] * 1e3)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("delta_ms:Q", title="B - A, ms a step"),
        y=alt.Y("category:N", title=None),
        row=alt.Row("step:N", title=None, sort=["prefill", "decode"]),
        color=alt.condition("datum.delta_ms > 0", alt.value("#d62728"), alt.value("#2ca02c")),
        tooltip=["step:N", "category:N", alt.Tooltip("delta_ms:Q", format=".3f")],
    ).properties(height=140)


# --- an attempt's GPU telemetry --------------------------------------------------------------

# The sample columns drawn, each in a panel of its own, with its title.
TELEMETRY_PANELS = (("gpu_pct", "GPU busy %"), ("power_w", "power W"),
                    ("sm_mhz", "SM clock MHz"), ("temp_c", "temperature °C"),
                    ("mem_used_mib", "memory in use MiB"))
THROTTLED_COLOR = "#d62728"
TELEMETRY_COLUMNS = ["t", "panel", "value", "throttle", "slowed"]


def telemetry_frame(tel: Telemetry) -> pd.DataFrame:
    """Long form: a row a sample and panel (t in seconds since the attempt's start, the
    value, None where not read) with the clock reasons of the sample ("" if none) and
    whether one of them marks a figure (`slowed`: engine/gpu_telemetry.SLOWDOWNS)."""
    reasons = [", ".join(throttle_reasons(m)) for m in tel.throttle]
    slowed = [any(r in SLOWDOWNS for r in throttle_reasons(m)) for m in tel.throttle]
    rows = [{"t": t, "panel": title, "value": getattr(tel, col)[i], "throttle": reasons[i],
             "slowed": slowed[i]}
            for col, title in TELEMETRY_PANELS for i, t in enumerate(tel.t)]
    return pd.DataFrame(rows, columns=TELEMETRY_COLUMNS)


def phase_frame(phases: list[tuple[str, float, float]]) -> pd.DataFrame:
    """The phases of a result in its telemetry's time (db/read/telemetry.phases)."""
    return pd.DataFrame([{"phase": p, "start": a, "end": b, "seconds": b - a}
                         for p, a, b in phases], columns=["phase", "start", "end", "seconds"])


def telemetry_chart(frame: pd.DataFrame, phases: pd.DataFrame) -> alt.VConcatChart:
    """A panel per TELEMETRY_PANELS series over the attempt's time, the engine start and the
    timed generate shaded behind, samples taken while the GPU was slowed in red."""
    x = alt.X("t:Q", title="seconds since the attempt started")
    panels = []
    for _, title in TELEMETRY_PANELS:
        df = frame[(frame["panel"] == title) & frame["value"].notna()]
        if df.empty:
            continue
        line = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=12)).encode(
            x=x, y=alt.Y("value:Q", title=title),
            tooltip=[alt.Tooltip("t:Q", format=",.1f", title="s"),
                     alt.Tooltip("value:Q", title=title), "throttle:N"])
        throttled = alt.Chart(df[df["slowed"]]).mark_point(
            color=THROTTLED_COLOR, filled=True, size=40).encode(
            x=x, y="value:Q", tooltip=["t:Q", "throttle:N"])
        layers = [line, throttled]
        if not phases.empty:
            layers.insert(0, alt.Chart(phases).mark_rect(opacity=0.15).encode(
                x="start:Q", x2="end:Q",
                color=alt.Color("phase:N", title="phase", scale=alt.Scale(
                    domain=list(PHASE_FILLS), range=list(PHASE_FILLS.values()))),
                tooltip=["phase:N", alt.Tooltip("seconds:Q", format=",.2f")]))
        panels.append(alt.layer(*layers).properties(height=110))
    return alt.vconcat(*panels)
