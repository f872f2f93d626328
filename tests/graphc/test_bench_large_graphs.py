"""bench/large_graphs.py at a small size: its graphs have about the nodes asked for, a row
measures both steps, and the table prints each size and the exponents between them."""

import math

import graphc as gc
from bench import large_graphs
from bench.__main__ import BENCHMARKS


def test_it_is_registered_with_the_runner():
    assert BENCHMARKS["large_graphs"][0] == "bench.large_graphs"


def test_the_graphs_have_about_the_nodes_asked_for():
    for shape, build in large_graphs.SHAPES.items():
        _, outputs = build(600)
        assert 540 <= len(gc.Graph(outputs).nodes) <= 660, shape


def test_a_small_run_measures_and_prints_exponents():
    rows = [large_graphs.measure_row("fan-out", n, measure_one=large_graphs.measure)
            for n in (150, 300)]
    for row in rows:
        assert row["o2"] > 0 and row["first_call"] > 0
        assert row["o2_mem"] >= 0 and row["first_call_mem"] >= 0
    lines = large_graphs.format_rows("fan-out", rows)
    assert len(lines) == 3 and lines[0].split()[1] == str(rows[0]["nodes"])
    assert "(n log n: k = " in lines[2]


def test_the_traced_peak_sees_an_allocation():
    assert large_graphs._traced_peak_bytes(lambda: bytearray(10 * 2**20)) >= 10 * 2**20


def test_exponents():
    assert math.isclose(large_graphs.exponent(10, 3.0, 100, 300.0), 2.0)
    assert 1.0 < large_graphs.n_log_n_exponent(10_000, 100_000) < 1.3
    assert math.isnan(large_graphs.exponent(10, 0.0, 100, 5.0))
