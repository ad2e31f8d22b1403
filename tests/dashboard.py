#!/usr/bin/env python3
"""Renders the shipped Grafana dashboard (conf/grafana/lvsdr-director.json) without
Grafana, which Debian does not package: every panel's queries run against a real
Prometheus (query_range over its HTTP API, the dashboard's variables set to "all"), and
the answers are drawn as a static HTML page in the dashboard's own grid (24 columns,
30 px a unit): time series as SVG lines with their legends, stat panels as numbers,
rows as headings. tests/page runs it on the VM lab's data and screenshots the page.

Fails (exit 1) when a query is refused by Prometheus, or when a panel named with
--expect-data has no series.

usage: dashboard.py DASHBOARD PROM_URL START END STEP OUT_HTML [--expect-data ID,ID…]
"""

import html
import json
import sys
import urllib.parse
import urllib.request

COLOURS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1",
           "#ba43a9", "#705da0", "#508642", "#cca300"]
UNIT_PX = 30
WIDTH_PX = 1400


def query_range(prom, expr, start, end, step):
    """The series Prometheus answers for expr, or raises with its error."""
    args = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/query_range?{args}", timeout=30) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def with_variables(expr):
    """The dashboard's variables as "all" (every instance, every service)."""
    return (expr.replace("$__rate_interval", "1m")
            .replace('"$instance"', '"(?s).*"').replace('"$service"', '"(?s).*"'))


def legend(fmt, metric):
    if not fmt:
        name = metric.get("__name__", "")
        labels = ",".join(f"{k}={v}" for k, v in sorted(metric.items())
                          if k not in ("__name__", "instance", "job"))
        return f"{name}{{{labels}}}" if labels else (name or "value")
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v).replace("{{ " + k + " }}", v)
    return out


def number(v):
    if v != v:  # NaN
        return "NaN"
    if abs(v) >= 1000 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def chart(series, w, h):
    """An SVG line chart of [(label, [(t, v)…])…]."""
    pts = [(t, v) for _, s in series for t, v in s if v == v]
    if not pts:
        return '<div class="empty">no data</div>'
    t0, t1 = min(t for t, _ in pts), max(t for t, _ in pts)
    lo, hi = min(0.0, min(v for _, v in pts)), max(v for _, v in pts)
    if hi == lo:
        hi = lo + 1
    left, right, top, bottom = 48, 8, 8, 18
    pw, ph = w - left - right, h - top - bottom

    def x(t):
        return left + (t - t0) / max(t1 - t0, 1) * pw

    def y(v):
        return top + (1 - (v - lo) / (hi - lo)) * ph
    out = [f'<svg width="{w}" height="{h}">']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{number(v)}</text>')
    out.append(f'<text x="{left}" y="{h - 4}">-{(t1 - t0):.0f} s</text>'
               f'<text x="{w - right}" y="{h - 4}" text-anchor="end">now</text>')
    for i, (_, s) in enumerate(series):
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s if v == v)
        out.append(f'<polyline points="{line}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.5"/>')
    out.append("</svg>")
    return "".join(out)


def panel_html(p, series, w, h):
    title = html.escape(p.get("title", ""))
    if p["type"] == "row":
        return f'<div class="row">{title}</div>'
    if p["type"] == "stat":
        values = "".join(
            f'<div class="stat"><b>{number(s[-1][1]) if s else "–"}</b><span>{html.escape(n)}</span></div>'
            for n, s in series) or '<div class="empty">no data</div>'
        body = f'<div class="stats">{values}</div>'
    else:
        body = chart(series, w - 16, h - 30 - 18 * min(len(series), 4))
        body += "".join(
            f'<div class="legend"><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{html.escape(n)}</div>'
            for i, (n, _) in enumerate(series[:4]))
        if len(series) > 4:
            body += f'<div class="legend">… and {len(series) - 4} more</div>'
    return f'<div class="panel"><h2>{title}</h2>{body}</div>'


def main():
    args = sys.argv[1:]
    expect = set()
    if "--expect-data" in args:
        i = args.index("--expect-data")
        expect = {int(x) for x in args[i + 1].split(",") if x}
        del args[i:i + 2]
    dashboard, prom, start, end, step, out = args
    d = json.load(open(dashboard))
    unit_w = WIDTH_PX / 24
    cells, failures, bottom = [], [], 0
    for p in d["panels"]:
        g = p["gridPos"]
        w, h = int(g["w"] * unit_w), g["h"] * UNIT_PX
        series = []
        for t in p.get("targets", []):
            expr = with_variables(t["expr"])
            try:
                result = query_range(prom, expr, start, end, step)
            except ValueError as e:
                failures.append(f"panel {p['id']} ({p.get('title')}): {expr}: {e}")
                continue
            for r in result:
                points = [(float(ts), float(v)) for ts, v in r["values"]]
                series.append((legend(t.get("legendFormat"), r["metric"]), points))
        if p["type"] != "row":
            print(f"panel {p['id']:>2} {p['type']:<10} {len(series):>3} series  {p.get('title')}",
                  flush=True)
        if p["id"] in expect and not series:
            failures.append(f"panel {p['id']} ({p.get('title')}): no data")
        left, top = int(g["x"] * unit_w), g["y"] * UNIT_PX
        bottom = max(bottom, top + h)
        cells.append(f'<div class="cell" style="left:{left}px;top:{top}px;width:{w - 6}px;height:{h - 6}px">'
                     f'{panel_html(p, series, w - 6, h - 6)}</div>')
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(d['title'])}</title>
<style>
body {{ margin: 0; overflow: hidden; background: #111217; color: #ccccdc; font: 12px sans-serif; }}
header {{ padding: 8px 12px; font-size: 16px; }}
header small {{ color: #8e8e9e; font-size: 12px; }}
.grid {{ position: relative; width: {WIDTH_PX}px; height: {bottom}px; margin: 0 6px; }}
.cell {{ position: absolute; overflow: hidden; }}
.panel {{ background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; height: 100%; padding: 4px 8px; box-sizing: border-box; }}
.panel h2 {{ font-size: 12px; margin: 2px 0 4px; font-weight: 500; }}
.row {{ font-size: 14px; padding-top: 8px; }}
svg text {{ fill: #8e8e9e; font-size: 10px; }}
svg line.grid {{ stroke: #2c3235; }}
.legend {{ white-space: nowrap; overflow: hidden; text-overflow: ellipsis; line-height: 18px; }}
.legend i {{ display: inline-block; width: 12px; height: 3px; margin: 0 6px 3px 0; }}
.stats {{ display: flex; gap: 24px; align-items: center; height: 80%; }}
.stat b {{ display: block; font-size: 40px; color: #73bf69; }}
.empty {{ color: #8e8e9e; padding: 20px; }}
</style>
<header>{html.escape(d['title'])} <small>rendered from Prometheus by tests/dashboard.py,
{len([p for p in d['panels'] if p['type'] != 'row'])} panels, variables: all instances, all services</small></header>
<div class="grid">{''.join(cells)}</div>
"""
    with open(out, "w") as f:
        f.write(page)
    for m in failures:
        print(f"dashboard: {m}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
