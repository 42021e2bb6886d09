"""Write the comparison: CSV tables, plots, and a markdown + HTML report.

``write_report(frame, out, config=..., command=...)`` writes into ``out``:

* ``results.csv`` — one row per (dataset, class, method), every metric;
* ``summary.csv`` — per (dataset, method): the mean over classes of every metric (and the std
  of the main ones across classes, columns ``<metric>_std``);
* ``<dataset>_metrics.png`` — one panel per metric, methods on the x axis, classes as dots;
* ``<dataset>_stability.png`` — stability per class and method (heat map);
* ``report.md`` and ``report.html`` — the summary tables, the per-class stability table,
  the plots, the settings and the command that made them.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

# metric -> (label, better)  better: "low" / "high" / "" (no direction)
METRICS = {
    "rel_error": ("relative l2 error", "low"),
    "sparsity_l0": ("sparsity (share of zero coefficients)", "high"),
    "hoyer": ("Hoyer sparsity", "high"),
    "stability": ("stability (matched cosine)", "high"),
    "stability_seed": ("stability across seeds", "high"),
    "stability_subsample": ("stability across subsamples", "high"),
    "c_deletion": ("C-Deletion (AUC, logit)", "low"),
    "c_insertion": ("C-Insertion (AUC, logit)", "high"),
    "c_mufidelity": ("C-μFidelity", "high"),
    "recovery_iou": ("recovery IoU (all planted)", "high"),
    "key_iou": ("recovery IoU (key concept)", "high"),
    "purity": ("purity", "high"),
    "top_is_key": ("top concept = key", "high"),
}
# purity stays in the CSV only: it rewards one concept covering everything (the background share)
TABLE_METRICS = ["rel_error", "sparsity_l0", "hoyer", "stability", "c_deletion", "c_insertion", "c_mufidelity",
                 "recovery_iou", "key_iou", "top_is_key", "fit_seconds"]


def method_order(frame) -> list[str]:
    """Methods in order of appearance, reference rows (``oracle ...``) last."""
    methods = list(dict.fromkeys(frame["method"].astype(str)))
    return [m for m in methods if not m.startswith("oracle")] + [m for m in methods if m.startswith("oracle")]


def summarise(frame):
    """Mean over classes per (dataset, method), with ``<metric>_std`` across classes; methods keep their order."""
    import pandas as pd

    metrics = [m for m in list(METRICS) + ["fit_seconds", "dead"] if m in frame.columns]
    order = method_order(frame)
    groups = frame.groupby(["dataset", "method"], sort=False)
    mean = groups[metrics].mean()
    std = groups[metrics].std(ddof=0).add_suffix("_std")
    out = pd.concat([mean, std], axis=1).reset_index()
    out["n_classes"] = groups.size().values
    out["method"] = pd.Categorical(out["method"], categories=order, ordered=True)
    out = out.sort_values(["dataset", "method"], kind="stable")
    out["method"] = out["method"].astype(str)
    return out.reset_index(drop=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(frame, columns: list[str], headers: list[str] | None = None, bold_best: bool = True) -> str:
    """A GitHub markdown table; the best value of each metric column (by its direction) in bold."""
    headers = headers or columns
    best: dict[str, Any] = {}
    if bold_best:
        ranked = frame[~frame["method"].astype(str).str.startswith("oracle")] if "method" in frame else frame
        for col in columns:
            direction = METRICS.get(col, ("", ""))[1]
            if direction and col in ranked and ranked[col].notna().any():
                best[col] = ranked[col].min() if direction == "low" else ranked[col].max()
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for col in columns:
            text = _fmt(row.get(col))
            if col in best and row.get(col) == best[col] and text != "–":
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_metrics(frame, dataset: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = frame[frame["dataset"] == dataset]
    metrics = [m for m in ["rel_error", "sparsity_l0", "stability", "c_deletion", "c_insertion", "c_mufidelity",
                           "key_iou", "top_is_key"] if m in sub.columns and sub[m].notna().any()]
    if not metrics:
        return None
    methods = method_order(sub)
    cols = 4
    rows = int(np.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes.flat, metrics):
        for i, method in enumerate(methods):
            values = sub.loc[sub["method"] == method, metric].astype(float).to_numpy()
            values = values[np.isfinite(values)]
            if len(values) == 0:
                continue
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.6, color="C0")
            ax.hlines(values.mean(), i - 0.3, i + 0.3, color="C3", lw=2)
        label, better = METRICS[metric]
        ax.set_title(f"{label}" + (f" ({better}er is better)" if better else ""), fontsize=8)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: one dot per class, bar = mean", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stability(frame, dataset: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = frame[frame["dataset"] == dataset]
    if "stability" not in sub or not sub["stability"].notna().any():
        return None
    table = sub.pivot_table(index="class_name", columns="method", values="stability", sort=False)
    table = table[[m for m in method_order(sub) if m in table.columns]]
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.35 * table.shape[0] + 1.2))
    im = ax.imshow(table.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]))
    ax.set_xticklabels(table.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]))
    ax.set_yticklabels(table.index, fontsize=8)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(f"{dataset}: stability per class (mean matched |cos|)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(frame, out: str | os.PathLike, *, config: dict | None = None, command: str | None = None,
                 title: str = "Concept extraction methods compared") -> dict[str, Path]:
    """Write CSVs, plots and report.md / report.html into ``out``; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    frame.to_csv(out / "results.csv", index=False)
    paths["results"] = out / "results.csv"
    summary = summarise(frame)
    summary.to_csv(out / "summary.csv", index=False)
    paths["summary"] = out / "summary.csv"

    md = [f"# {title}", ""]
    if command:
        md += ["Made by:", "", "```", command, "```", ""]
    md += ["Columns: mean over classes. Arrows: ↓ lower is better, ↑ higher is better; best in bold.", ""]
    for dataset in dict.fromkeys(frame["dataset"]):
        sub = summary[summary["dataset"] == dataset]
        cols = ["method"] + [c for c in TABLE_METRICS if c in sub.columns and sub[c].notna().any()]
        heads = ["method"] + [_header(c) for c in cols[1:]]
        n_classes = int(sub["n_classes"].max())
        n_images = int(frame.loc[frame["dataset"] == dataset, "n_images"].mean())
        md += [f"## {dataset} ({n_classes} classes, ~{n_images} images each)", "", markdown_table(sub, cols, heads),
               ""]
        stab = frame[(frame["dataset"] == dataset) & frame["stability"].notna()].pivot_table(index="class_name", columns="method",
                                                               values="stability", sort=False)
        stab = stab[[m for m in method_order(frame) if m in stab.columns]].reset_index()
        md += ["Stability per class (mean Hungarian-matched |cos| over seed and subsample refits):", "",
               markdown_table(stab, list(stab.columns), bold_best=False), ""]
        for kind, fn in (("metrics", plot_metrics), ("stability", plot_stability)):
            path = fn(frame, dataset, out / f"{_slug(dataset)}_{kind}.png")
            if path is not None:
                paths[f"{dataset}_{kind}"] = path
                md += [f"![{dataset} {kind}]({path.name})", ""]
    if config:
        md += ["## Settings", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    paths["markdown"] = out / "report.md"
    (out / "report.html").write_text(_html(text, title))
    paths["html"] = out / "report.html"
    return paths


def _header(col: str) -> str:
    label, better = METRICS.get(col, (col.replace("_", " "), ""))
    short = {"relative l2 error": "rel. error", "sparsity (share of zero coefficients)": "sparsity l0",
             "stability (matched cosine)": "stability", "C-Deletion (AUC, logit)": "C-Deletion",
             "C-Insertion (AUC, logit)": "C-Insertion", "recovery IoU (all planted)": "recovery IoU",
             "recovery IoU (key concept)": "key IoU", "top concept = key": "top = key"}.get(label, label)
    return short + {"low": " ↓", "high": " ↑"}.get(better, "")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _html(markdown: str, title: str) -> str:
    """A minimal self-contained HTML rendering of the markdown report (tables, images, code, headings)."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
            continue
        if line.startswith("|"):
            j = i
            rows = []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip("|").split("|")])
                j += 1
            head, data = rows[0], rows[2:]
            cell = lambda c: html.escape(c.strip("*")) if not c.startswith("**") else f"<b>{html.escape(c.strip('*'))}</b>"
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in data) + "</table>")
            i = j
            continue
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<p><img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}pre{background:#f4f4f4;padding:8px}"
             "img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
