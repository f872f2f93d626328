"""Which user of a node leads to a target: reachability without the transitive closure.

The fuse pass asks, for a stored producer and a kernel that reads it, which other user
of the producer leads to the kernel's root: explain_fusion's "would create a cycle
through %v" names the first such user in the graph's order. A table of ancestor sets
answers in a few big-int operations but holds n^2/2 bits (1.3 GB at 137k nodes). Here a
question is two searches raced a step at a time, each kept inside the window of
topological positions between the candidates and the target (a path from u to t only
visits nodes placed between u and t):
  - backward from the target over inputs, down to the first candidate's position: it
    meets every candidate that leads to the target, so its answer is the first of them;
  - forward from the candidates, first position first, over users up to the target's
    position: the nodes a failed candidate's search visited cannot reach the target, so
    later candidates skip them; the first candidate that reaches the target is the answer.
Both give the same node, so the first to finish answers. Time is at most twice the
cheaper search, memory its visited sets: a question about a small kernel or an
unrelated branch costs what that kernel or branch holds, whatever the graph's size.
Deciding for every edge whether another path implies it is transitive reduction, which
no known algorithm does in n log n on every DAG; a question whose both windows are
large (many producers each read again far downstream of a long chain) costs that window.
"""

from __future__ import annotations


class Reachability:
    """Answers first_leading_to over one graph's users and topological positions."""

    def __init__(self, users: dict, position: dict):
        self.users, self.position = users, position  # users: each list in position order
        self._user_sets = {}

    def first_leading_to(self, node, skip, target):
        """The first user of `node` in position order, not in `skip` and not `target`,
        from which a path leads to `target`; None when there is none."""
        skip = set(skip)
        end = self.position[target]
        candidates = (u for u in self.users[node] if u not in skip)
        first = next(candidates, None)
        if first is None or self.position[first] >= end:
            return None
        searches = (self._backward(node, skip, target, self.position[first]),
                    self._forward(self._before(first, candidates, end), target))
        while True:
            for search in searches:
                try:
                    next(search)
                except StopIteration as finished:
                    return finished.value

    def _before(self, first, rest, end):
        """first, then the rest of the candidates placed before position end."""
        yield first
        for user in rest:
            if self.position[user] >= end:
                return
            yield user

    def _user_set(self, node) -> set:
        if node not in self._user_sets:  # one node, several kernels: build it once
            self._user_sets[node] = set(self.users[node])
        return self._user_sets[node]

    def _backward(self, node, skip, target, low):
        """Search target's ancestors placed at or after `low` (the first candidate's
        position); return the first candidate among them. One step per node."""
        users, position = self._user_set(node), self.position
        best, stack, seen = None, [target], {target}
        while stack:
            for inp in stack.pop().inputs:
                if inp in seen or position[inp] < low:
                    continue
                seen.add(inp)
                stack.append(inp)
                if inp in users and inp not in skip and (
                        best is None or position[inp] < position[best]):
                    best = inp
                    if position[inp] == low:  # the first candidate: none comes earlier
                        return best
            yield
        return best

    def _forward(self, candidates, target):
        """Search forward from each candidate in turn, up to target's position; return
        the first that reaches target. One step per node."""
        end, dead = self.position[target], set()  # dead: visited, cannot reach target
        for start in candidates:
            if start in dead:
                continue
            stack = [start]
            dead.add(start)
            while stack:
                for user in self.users[stack.pop()]:
                    if user is target:
                        return start
                    if user not in dead and self.position[user] < end:
                        dead.add(user)
                        stack.append(user)
                yield
        return None
