"""gc.explore / the explorer page: self-contained, what it knows about each node, and,
end to end in headless Chromium (graphc/browser.py), that it loads without console
errors, a scope collapses and a click shows a node's details."""

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphc as gc
from graphc import browser
from graphc.explore import page_data
from graphc.placement import Placement
from graphc.viz import GraphvizMissing, picture


def mlp_training():
    x = gc.input("x", ("batch", 4))
    y = gc.input("y", ("batch",), dtype="int64")
    logits, params = gc.nn.mlp(x, [4, 8, 8, 3])
    loss = gc.nn.softmax_cross_entropy(logits, y)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((5, 4)).astype(np.float32), "y": rng.integers(0, 3, 5)}
    return loss, params, feeds


def page_parts(path):
    text = path.read_text()
    data = json.loads(re.search(r'<script id="graph-data" type="application/json">(.*?)'
                                r'</script>', text, re.S).group(1))
    svg = ET.fromstring(re.search(r"<svg.*</svg>", text, re.S).group(0))
    return text, data, svg


def svg_titles(svg, kind):
    ns = "{http://www.w3.org/2000/svg}"
    return [g.find(f"{ns}title").text for g in svg.iter(f"{ns}g") if g.get("class") == kind]


def test_page_is_self_contained(tmp_path):
    loss, _, feeds = mlp_training()
    gc.explore(loss, tmp_path / "p.html", backward=True, values=feeds)
    text, _, _ = page_parts(tmp_path / "p.html")
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)=', text)
    assert not re.search(r"https?://(?!www\.w3\.org/)", text)  # SVG namespaces only
    assert "@import" not in text and "url(" not in text


def test_page_describes_every_drawn_node_and_cluster(tmp_path):
    loss, params, feeds = mlp_training()
    path = gc.explore(loss, tmp_path / "p.html", backward=True, values=feeds)
    _, data, svg = page_parts(tmp_path / "p.html")
    assert path == str(tmp_path / "p.html")
    assert set(svg_titles(svg, "node")) == set(data["nodes"])
    assert set(svg_titles(svg, "cluster")) == set(data["clusters"])
    W = data["nodes"]["layer1_W"]
    assert W["ir"].startswith("%layer1_W = param() : f32[4,8]  # {layer1} test_explore.py:")
    assert W["type"] == "f32[4,8]" and W["loc"].startswith("test_explore.py:")
    # The panel writes values in full up to DETAIL_SIZE elements: a 4×8 one row a line.
    assert W["scope"] == "layer1" and W["value"].count("\n") == 3
    assert "grad" in W and W["clusters"] == [c for c in data["cluster_order"]
                                              if data["clusters"][c]["label"] == "layer1"
                                              and not data["clusters"][c]["parents"]]
    grad_layer1 = [c for c, info in data["clusters"].items() if info["label"] == "layer1"
                   and info["parents"]]
    assert len(grad_layer1) == 1 and data["clusters"][grad_layer1[0]]["grad"]
    assert data["cluster_kind"] == "scopes" and data["kernels"] == []


def test_fused_page_gives_each_node_its_kernels_source(tmp_path):
    loss, _, feeds = mlp_training()
    gc.explore(loss, tmp_path / "f.html", backward=True, stage="fused", values=feeds)
    _, data, svg = page_parts(tmp_path / "f.html")
    assert data["cluster_kind"] == "kernels" and data["kernels"] and data["dims"] == "batch=5"
    assert set(svg_titles(svg, "node")) == set(data["nodes"])
    in_kernels = [n for n in data["nodes"] if re.match(r"k\d+\.", n)]
    assert in_kernels and all("kernel" in data["nodes"][n] for n in in_kernels)
    sources = [data["kernels"][data["nodes"][n]["kernel"]] for n in in_kernels]
    assert all(k["source"] for k in sources)
    # Without values the kernels are generated for an example size.
    pic = picture([loss], backward=True, stage="fused")
    assert page_data(pic, Placement(pic.graph, scopes=False), None)["dims"] == "batch=8"


def test_collapse_names_the_clusters_that_start_collapsed(tmp_path):
    loss, _, _ = mlp_training()
    gc.explore(loss, tmp_path / "p.html", backward=True, collapse=["layer1"])
    _, data, _ = page_parts(tmp_path / "p.html")
    assert sorted(data["clusters"][c]["label"] for c in data["collapsed"]) == ["layer1"] * 2


def test_explore_without_graphviz_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    loss, _, _ = mlp_training()
    with pytest.raises(GraphvizMissing, match="apt-get install graphviz"):
        gc.explore(loss, tmp_path / "p.html")
    assert not (tmp_path / "p.html").exists()


# --- in a browser ------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(browser.missing() is not None,
                                    reason=f"no headless browser: {browser.missing()}")


def cluster_id(driver, label, nested=False):
    return driver.execute_script(
        "return data.cluster_order.find((c) => data.clusters[c].label === arguments[0] "
        "&& (data.clusters[c].parents.length > 0) === arguments[1])", label, nested)


@needs_chromium
def test_page_loads_collapses_and_shows_details_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    loss, _, feeds = mlp_training()
    page = gc.explore(loss, tmp_path / "p.html", backward=True, values=feeds)
    with browser.headless_chromium() as driver:
        driver.get(f"file://{page}")
        assert browser.console_errors(driver) == []
        assert driver.find_element(By.TAG_NAME, "svg").is_displayed()

        # A scope collapses from its label in the picture: its nodes hide, its box fills.
        layer1 = cluster_id(driver, "layer1")
        weight = driver.execute_script("return nodeElements['layer1_W']")
        assert weight.is_displayed()
        driver.execute_script("return clusterElements[arguments[0]].querySelector('text')",
                              layer1).click()
        assert not weight.is_displayed()
        cluster = driver.execute_script("return clusterElements[arguments[0]]", layer1)
        assert "collapsed" in cluster.get_attribute("class")
        assert cluster.find_element(By.TAG_NAME, "text").text.startswith("▸ layer1 (")
        # ... and expands again from the scope tree.
        driver.find_element(By.CSS_SELECTOR, f'#scopes button[data-cluster="{layer1}"]').click()
        assert weight.is_displayed()

        # A click on a node shows its IR line, type, source line, scope, value, gradient.
        weight.click()
        details = driver.find_element(By.ID, "details").text
        assert "%layer1_W = param() : f32[4,8]" in details
        assert "f32[4,8]" in details and "test_explore.py:" in details
        assert "layer1" in details and "value" in details and "gradient" in details
        assert "selected" in weight.get_attribute("class")

        # Pan and zoom move the view box.
        before = driver.execute_script("return svg.getAttribute('viewBox')")
        driver.find_element(By.ID, "zoom-in").click()
        assert driver.execute_script("return svg.getAttribute('viewBox')") != before
        driver.find_element(By.ID, "fit").click()
        assert browser.console_errors(driver) == []
        driver.save_screenshot(str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").read_bytes()[:4] == b"\x89PNG"


@needs_chromium
def test_fused_page_shows_a_kernels_source_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    loss, _, feeds = mlp_training()
    page = gc.explore(loss, tmp_path / "f.html", backward=True, stage="fused", values=feeds)
    with browser.headless_chromium() as driver:
        driver.get(f"file://{page}")
        node = driver.execute_script(
            "return Object.keys(data.nodes).find((n) => data.nodes[n].kernel !== undefined "
            "&& n.startsWith('k'))")
        driver.execute_script("return nodeElements[arguments[0]]", node).click()
        details = driver.find_element(By.ID, "details").text
        source = driver.execute_script(
            "return data.kernels[data.nodes[arguments[0]].kernel].source", node)
        assert "generated for batch=5" in details and source.splitlines()[0] in details
        assert browser.console_errors(driver) == []
