"""The reachability behind fusion's "would create a cycle" reason: the same answers as a
brute-force search on random DAGs, the same answers inside the fusion planner, and
memory that grows linearly with a fan-out (an ancestor table grew as n^2)."""

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.passes.fusion import FusionPlanner, explain_fusion, plan_fusion
from graphc.passes.reachability import Reachability
from tests.strategies import graphs


@st.composite
def dags(draw, max_nodes=24):
    """A random DAG of graphc nodes: each new node a tanh of one earlier node or an add of
    two; every node an output, so no part of it is dropped."""
    nodes = [gc.input("x", (2,)), gc.input("y", (2,))]
    for _ in range(draw(st.integers(1, max_nodes))):
        a = draw(st.sampled_from(nodes))
        if draw(st.booleans()):
            nodes.append(gc.tanh(a))
        else:
            nodes.append(gc.add(a, draw(st.sampled_from(nodes))))
    return gc.Graph(nodes)


def descendants(graph, node) -> set:
    """Nodes reachable from node by one edge or more (ids), by plain search."""
    users, found, stack = graph.users, set(), [node]
    while stack:
        for user in users[stack.pop()]:
            if id(user) not in found:
                found.add(id(user))
                stack.append(user)
    return found


def brute_force(graph, node, skip, target):
    """The first user of node in the graph's order, not skipped, leading to target."""
    skipped = {id(s) for s in skip}
    for user in graph.users[node]:
        if id(user) not in skipped and user is not target and (
                id(target) in descendants(graph, user)):
            return user
    return None


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_first_leading_to_matches_brute_force_on_random_dags(graph, data):
    position = {n: i for i, n in enumerate(graph.nodes)}
    reach = Reachability(graph.users, position)
    for node in graph.nodes:
        users = graph.users[node]
        skip = data.draw(st.lists(st.sampled_from(users), unique_by=id)) if users else []
        for target in graph.nodes:
            assert reach.first_leading_to(node, skip, target) is brute_force(
                graph, node, skip, target), (node, skip, target)


class CheckedPlanner(FusionPlanner):
    """The planner, each leads_back answer checked against brute force."""
    asked = 0

    def leads_back(self, node, inside, root):
        answer = super().leads_back(node, inside, root)
        assert answer is brute_force(self.graph, node, inside, root)
        CheckedPlanner.asked += 1
        return answer


@settings(max_examples=150, deadline=None)
@given(graphs(dtype="float32", max_ops=14))
def test_the_planner_asks_and_gets_the_brute_force_answers(case):
    outputs, _ = case
    CheckedPlanner(gc.Graph(outputs)).plan()


def test_the_planner_check_is_not_vacuous():
    CheckedPlanner.asked = 0
    x = gc.input("x", (4, 4))
    e = gc.exp(x)
    side = e[0:4, 0:4]  # a slice is not fusible: a second path from e to the add
    graph = gc.Graph([gc.neg(e + side), gc.tanh(e)])
    CheckedPlanner(graph).plan()
    assert CheckedPlanner.asked >= 2
    assert any("would create a cycle through" in line for line in explain_fusion(graph))


def fan_out(branches):
    x = gc.input("x", ("batch", 3))
    h = gc.tanh(x)
    return gc.Graph([gc.exp(h * float(i + 2)) for i in range(branches)])


def peak_bytes_of_planning(graph) -> int:
    tracemalloc.start()
    try:
        plan_fusion(graph)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_planning_memory_grows_linearly_with_a_fan_out():
    # h is stored and read by every branch's kernel: its reasons ask one question per
    # kernel. An ancestor table holds n^2/2 bits: 4x the nodes took 16x the memory.
    small, large = (peak_bytes_of_planning(fan_out(k)) for k in (2_000, 8_000))
    assert large < 5 * small, (small, large)
