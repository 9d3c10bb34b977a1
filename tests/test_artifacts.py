"""Run summaries and artifact content (no server): Markdown, keys, PNGs as data: URIs."""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from oiflow.flows.summary import RunSummary  # noqa: E402


def test_summary_markdown_lists_failures_and_products(tmp_path):
    s = RunSummary(flow="reprocess-archive", root=str(tmp_path), processed=["n1", "n2"], skipped=["n0"],
                   failures=[{"unit": "n2", "item": "/a/n2/bad.fits", "error": "OIFitsError: truncated"}],
                   products=[{"night": "2024-01-01", "target_name": "HD_1", "instrument_mode": "SIM_K",
                              "calib_level": 2, "nb_vis": 0, "nb_vis2": 6, "nb_t3": 4, "nb_vis_points": 0,
                              "nb_vis2_points": 18, "nb_t3_points": 12, "em_min": 2e-6,
                              "em_max": 2.4e-6, "access_url": str(tmp_path / "2024-01-01/L2/a.fits")}])
    md = s.markdown()
    assert "| n2 | bad.fits | OIFitsError: truncated |" in md
    assert "| 2024-01-01 | HD_1 | SIM_K | L2 | 0/18/12 | 2.00–2.40 |  |  | 2024-01-01/L2/a.fits |" in md  # L2: no verdict
    assert not s.ok and s.state_message.startswith("partially failed: 1 item(s) of 3 unit(s) failed")
    assert RunSummary.from_dict(s.to_dict()) == s


def test_png_is_embedded_as_a_data_uri(tmp_path):
    from oiflow.tasks.artifacts import artifact_key, png_data_uri

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    png = tmp_path / "uv.png"
    fig.savefig(png)
    plt.close(fig)
    uri = png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png.read_bytes()
    assert artifact_key("oiflow", "Reprocess Archive", "HD 1/x") == "oiflow-reprocess-archive-hd-1-x"


def test_the_summary_travels_as_json_in_the_final_state():
    s = RunSummary(flow="reprocess-archive", root="/p", processed=["reduce n1/o1"], skipped=["ingest n2"],
                   products=[{"access_url": "/p/n1/L1/o1.fits", "night": "2023-03-15", "verdict": None}],
                   failures=[{"unit": "reduce n1/o2", "item": "o2", "error": "ReductionError: no frames"}],
                   orchestration="Prefect server at http://127.0.0.1:4200/api")
    text = s.to_json()
    assert isinstance(text, str)
    assert RunSummary.from_state_data(text) == s == RunSummary.from_state_data(s.to_dict())
    assert RunSummary.from_state_data(None) is None and RunSummary.from_state_data("not json") is None
    assert RunSummary.from_state_data({"no": "flow"}) is None
